"""Delivering due follow-ups: claim rows, re-check the person, run the flow, send, record.

A follow-up row moves through these statuses:

    pending --claim--> claimed --before the first write--> sending --> sent
       ^                  |  \\                                |  \\--> unconfirmed (maybe sent)
       |                  |   \\--> cancelled / skipped         \\--> failed (gave up, partial)
       \\-- deferred (quiet hours) or retried (transient failure, backoff) --/

`claimed` rows whose process died are claimed again after the lease; `sending` rows never are
(the message may have gone out), which is what makes delivery at most once per follow-up.
The claim increments `attempts`, and every later update is fenced on it, so a process whose
lease ran out cannot overwrite the row another process now owns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import FollowUp, User
from bot.followup_rules import (
    Action,
    Decision,
    PersonFacts,
    PlannedFollowUp,
    QuietHours,
    as_utc,
    decide,
    next_occurrence,
    policy,
    retry_delay,
)
from bot.identity import Identity, IdentityError
from bot.repository import utcnow
from bot.sender import (
    RecipientGone,
    Sender,
    SendError,
    SendFailed,
    SendUncertain,
    before_first_write,
)
from flows.engine import Reply
from flows.timezones import person_zone

__all__ = [
    "ClaimedFollowUp",
    "FollowUpDeliverer",
    "FollowUpFlows",
    "claim_due_followups",
    "insert_planned",
    "release_claims",
    "utcnow",
]

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=30)  # a dead process's claims are taken over after this
DEFAULT_BATCH = 100
# Follow-ups prepared at once (flow, database): enough that the sender always has the next ones
# ready at 30 a second even when each takes a second or two on a busy database.
DEFAULT_CONCURRENCY = 64
MAX_ATTEMPTS = 5


class FollowUpFlows(Protocol):
    """What the deliverer needs from the service: the flows' replies for a due follow-up."""

    async def followup(
        self, pseudonym: str, kind: str, details: Mapping[str, Any] | None = None
    ) -> tuple[Reply, ...]:
        """Run the flow for a due follow-up and save its state; the replies to send."""
        ...


@dataclass(frozen=True)
class ClaimedFollowUp:
    """A row this process claimed; `attempts` is the fencing token of the claim."""

    id: int
    user_id: str
    kind: str
    due_at: datetime
    payload: Mapping[str, Any]
    attempts: int


_RETURNING = (
    FollowUp.id,
    FollowUp.user_id,
    FollowUp.kind,
    FollowUp.due_at,
    FollowUp.payload,
    FollowUp.attempts,
)


def _claimed(rows: Sequence[Any]) -> list[ClaimedFollowUp]:
    return sorted(
        (
            ClaimedFollowUp(
                r.id, r.user_id, r.kind, as_utc(r.due_at), dict(r.payload or {}), r.attempts
            )
            for r in rows
        ),
        key=lambda c: c.due_at,
    )


async def claim_due_followups(
    session: AsyncSession, now: datetime, limit: int, lease: timedelta = DEFAULT_LEASE
) -> list[ClaimedFollowUp]:
    """Claim up to `limit` due rows (and claims older than the lease), oldest due first.

    PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED inside the UPDATE, so concurrent processes
    each get different rows without waiting on each other. Two statements, not one with OR, so
    each is a plain range scan of (status, due_at) that stops at the limit even with a million
    pending rows. SQLite: the same conditional UPDATE; SQLite runs one writer at a time.
    """
    stale = now - lease
    claimed: list[Any] = []
    wanted = (
        (FollowUp.status == "claimed") & (FollowUp.claimed_at < stale),
        (FollowUp.status == "pending") & (FollowUp.due_at <= now),
    )
    for condition in wanted:
        remaining = limit - len(claimed)
        if remaining <= 0:
            break
        pick = select(FollowUp.id).where(condition).order_by(FollowUp.due_at).limit(remaining)
        if session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        result = await session.execute(
            update(FollowUp)
            .where(FollowUp.id.in_(pick.scalar_subquery()))
            .values(status="claimed", claimed_at=now, attempts=FollowUp.attempts + 1)
            .returning(*_RETURNING)
            .execution_options(synchronize_session=False)
        )
        claimed.extend(result.all())
    return _claimed(claimed)


async def release_claims(session: AsyncSession, items: Sequence[ClaimedFollowUp]) -> int:
    """Give back claims not yet worked on (a graceful stop), so another process takes them now."""
    released = 0
    for item in items:
        result = await session.execute(
            update(FollowUp)
            .where(_owned(item, "claimed"))
            .values(status="pending", claimed_at=None)
            .execution_options(synchronize_session=False)
        )
        released += result.rowcount or 0  # type: ignore[attr-defined]
    return released


def _owned(item: ClaimedFollowUp, *statuses: str) -> Any:
    """The row, still in one of these statuses under this claim (the fence)."""
    return and_(
        FollowUp.id == item.id,
        FollowUp.attempts == item.attempts,
        FollowUp.status.in_(statuses),
    )


async def insert_planned(session: AsyncSession, user_id: str, planned: PlannedFollowUp) -> bool:
    """Insert a planned row unless one with its idempotency key exists; True when inserted."""
    values = {
        "user_id": user_id,
        "kind": planned.kind,
        "due_at": planned.due_at,
        "status": "pending",
        "attempts": 0,
        "idempotency_key": planned.idempotency_key,
        "payload": dict(planned.payload),
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(FollowUp)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[FollowUp.idempotency_key])
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Person:
    """What delivery needs from a person's row, read for a whole batch in one query."""

    facts: PersonFacts
    chat_ref: str | None


async def _people(session: AsyncSession, user_ids: set[str]) -> dict[str, _Person]:
    """The people of a batch, by id (erased people are simply absent)."""
    result = await session.execute(
        select(
            User.id,
            User.active,
            User.paused_until,
            User.consent_checkins,
            User.timezone,
            User.country,
            User.recovery_start,
            User.channel,
            User.chat_ref,
        ).where(User.id.in_(user_ids))
    )
    people = {}
    for row in result:
        facts = PersonFacts(
            active=bool(row.active),
            paused_until=row.paused_until,
            consent_checkins=row.consent_checkins,
            zone=person_zone(row.timezone, row.country),
            recovery_start=row.recovery_start,
        )
        people[row.id] = _Person(facts, row.chat_ref if row.channel == "telegram" else None)
    return people


class _SentMarks:
    """Records 'sent' for many rows in one statement, a moment after their sends.

    One transaction per message would cost more than the send itself. A crash before the flush
    leaves those rows 'sending', which the sweep turns into 'unconfirmed': still never resent.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pending: list[int] = []
        self._lock = asyncio.Lock()
        self._flushed_at = time.monotonic()

    async def add(self, row_id: int, flush_at: int = 20, every: float = 0.5) -> None:
        """Queue a row; flush when enough have gathered or half a second has passed."""
        self._pending.append(row_id)
        if len(self._pending) >= flush_at or time.monotonic() - self._flushed_at >= every:
            await self.flush()

    async def flush(self) -> None:
        """Write every queued mark."""
        async with self._lock:
            ids, self._pending = self._pending, []
            self._flushed_at = time.monotonic()
            if not ids:
                return
            async with self._sessions.begin() as session:
                await session.execute(
                    update(FollowUp)
                    .where(FollowUp.id.in_(ids), FollowUp.status == "sending")
                    .values(status="sent", sent_at=self._clock())
                    .execution_options(synchronize_session=False)
                )


class _LostClaim(Exception):
    """Another process owns the row now (our lease ran out); leave it alone."""


class FollowUpDeliverer:
    """Claims due follow-ups and delivers each at most once, respecting the person's wishes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        service: FollowUpFlows,
        identity: Identity,
        sender: Sender,
        clock: Callable[[], datetime] = utcnow,
        *,
        batch: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease: timedelta = DEFAULT_LEASE,
        max_attempts: int = MAX_ATTEMPTS,
        quiet: QuietHours | None = None,
    ) -> None:
        """`batch` rows are claimed at a time and `concurrency` delivered at once."""
        self._sessions = sessions
        self._service = service
        self._identity = identity
        self._sender = sender
        self._clock = clock
        self._batch = batch
        self._concurrency = concurrency
        self._lease = lease
        self._max_attempts = max_attempts
        self._quiet = quiet or QuietHours()
        self._stopping = False
        self._sent = _SentMarks(sessions, clock)
        self.outcomes: dict[str, int] = {}

    def stop(self) -> None:
        """Claim nothing more; run_once finishes what it holds and gives back the rest."""
        self._stopping = True

    async def run_once(self) -> int:
        """Deliver everything due now, batch after batch; returns how many rows were handled.

        Rows are claimed in batches while earlier ones are still being sent, so the sender
        never waits for a claim; at most about two batches are held at once, far below the
        lease at 30 messages a second.
        """
        queue: asyncio.Queue[tuple[ClaimedFollowUp, _Person | None] | None] = asyncio.Queue(
            maxsize=self._batch
        )
        handled = 0

        async def produce() -> None:
            try:
                while not self._stopping:
                    async with self._sessions.begin() as session:
                        batch = await claim_due_followups(
                            session, self._clock(), self._batch, self._lease
                        )
                        people = await _people(session, {item.user_id for item in batch})
                    if not batch:
                        break
                    for item in batch:
                        await queue.put((item, people.get(item.user_id)))
            finally:
                for _ in range(self._concurrency):
                    await queue.put(None)

        async def work() -> None:
            nonlocal handled
            while (entry := await queue.get()) is not None:
                item, person = entry
                if self._stopping:
                    await self._release(item)
                    continue
                await self._handle(item, person)
                handled += 1

        try:
            await asyncio.gather(produce(), *(work() for _ in range(self._concurrency)))
        finally:
            await self._sent.flush()
        return handled

    async def _release(self, item: ClaimedFollowUp) -> None:
        async with self._sessions.begin() as session:
            await release_claims(session, [item])

    def _count(self, outcome: str) -> str:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcome

    async def deliver(self, item: ClaimedFollowUp) -> str:
        """Handle one claimed follow-up; returns what happened to it (for logs and tests)."""
        async with self._sessions() as session:
            person = (await _people(session, {item.user_id})).get(item.user_id)
        try:
            return await self._handle(item, person)
        finally:
            await self._sent.flush()

    async def _handle(self, item: ClaimedFollowUp, person: _Person | None) -> str:
        try:
            return self._count(await self._deliver(item, person))
        except _LostClaim:
            return self._count("lost_claim")
        except Exception as exc:  # one bad row must never stop the others
            log.exception("follow-up %s failed: %s", item.id, type(exc).__name__)
            return self._count(await self._after_error(item))

    async def _deliver(self, item: ClaimedFollowUp, person: _Person | None) -> str:
        """Decide with the person's state as read with the batch (seconds old at most); the
        service re-reads it under the row lock before anything is sent."""
        now = self._clock()
        if person is None:
            return "gone"  # erased: the row went with the person
        decision = decide(item.kind, item.payload, item.due_at, now, person.facts, self._quiet)
        chat_ref = person.chat_ref
        if decision.action is Action.DELIVER and chat_ref is None:
            decision = Decision(Action.CANCEL, "no chat to send to")
        if decision.action is not Action.DELIVER or policy(item.kind).recurring:
            async with self._sessions.begin() as session:
                await self._apply_decision(session, item, decision, person.facts.zone, now)
        if decision.action is not Action.DELIVER:
            log.info("follow-up %s %s: %s", item.kind, decision.action, decision.reason)
            return str(decision.action)
        assert chat_ref is not None
        replies = await self._service.followup(item.user_id, item.kind, item.payload)
        if not replies:
            await self._finish(item, "skipped", ("claimed",))
            return "nothing_to_send"
        try:
            chat_id = int(self._identity.decrypt(chat_ref))
        except (IdentityError, ValueError):
            await self._finish(item, "failed", ("claimed",))
            return "undecryptable"
        return await self._send(item, chat_id, replies)

    async def _apply_decision(
        self,
        session: AsyncSession,
        item: ClaimedFollowUp,
        decision: Decision,
        zone: Any,
        now: datetime,
    ) -> None:
        """Record the decision; a recurring kind plans its next occurrence right away.

        Planning before sending means a crash mid-send never breaks the daily rhythm.
        """
        fence = _owned(item, "claimed")
        if decision.action is Action.DEFER:
            assert decision.until is not None
            values: dict[str, Any] = {"status": "pending", "due_at": decision.until}
            # Quiet hours are not a failed attempt.
            values["attempts"] = FollowUp.attempts - 1
            await self._fenced(session, fence, values)
            return
        if decision.action is not Action.CANCEL and policy(item.kind).recurring:
            await self._plan_next(session, item, zone, now)
        if decision.action is Action.CANCEL:
            await self._fenced(session, fence, {"status": "cancelled"})
        elif decision.action is Action.SKIP:
            await self._fenced(session, fence, {"status": "skipped"})

    async def _plan_next(
        self, session: AsyncSession, item: ClaimedFollowUp, zone: Any, now: datetime
    ) -> None:
        planned = next_occurrence(item.kind, item.user_id, item.payload, zone, item.due_at, now)
        if planned is None:
            return
        # The person set a new time meanwhile (a pending row of this kind): that one rules.
        newer = await session.scalar(
            select(FollowUp.id).where(
                FollowUp.user_id == item.user_id,
                FollowUp.kind == item.kind,
                FollowUp.status == "pending",
            )
        )
        if newer is None:
            await insert_planned(session, item.user_id, planned)

    async def _fenced(self, session: AsyncSession, fence: Any, values: dict[str, Any]) -> None:
        result = await session.execute(
            update(FollowUp)
            .where(fence)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise _LostClaim

    async def _finish(self, item: ClaimedFollowUp, status: str, statuses: tuple[str, ...]) -> None:
        values: dict[str, Any] = {"status": status}
        if status == "sent":
            values["sent_at"] = self._clock()
        async with self._sessions.begin() as session:
            await self._fenced(session, _owned(item, *statuses), values)

    async def _send(self, item: ClaimedFollowUp, chat_id: int, replies: tuple[Reply, ...]) -> str:
        marked = False

        async def mark_sending() -> None:
            nonlocal marked
            if marked:
                return
            async with self._sessions.begin() as session:
                await self._fenced(session, _owned(item, "claimed"), {"status": "sending"})
            marked = True

        statuses = ("claimed", "sending")
        try:
            with before_first_write(mark_sending):
                await self._sender.send(chat_id, replies)
        except _LostClaim:
            raise
        except RecipientGone:
            await self._recipient_gone(item)
            return "recipient_gone"
        except SendUncertain:
            await self._finish(item, "unconfirmed", statuses)
            return "unconfirmed"
        except SendFailed as exc:
            if exc.delivered:
                await self._finish(item, "failed", statuses)  # resending would repeat a part
                return "partially_sent"
            return await self._retry_later(item, statuses)
        except SendError:
            await self._finish(item, "failed", statuses)
            return "rejected"
        await self._sent.add(item.id)
        return "sent"

    async def _after_error(self, item: ClaimedFollowUp) -> str:
        """An unexpected fault: retry later, unless a send had begun (then never resend)."""
        try:
            await self._finish(item, "unconfirmed", ("sending",))
            return "error_unconfirmed"
        except _LostClaim:
            pass
        try:
            await self._retry_later(item, ("claimed",))
        except _LostClaim:
            return "lost_claim"
        return "error"

    async def _retry_later(self, item: ClaimedFollowUp, statuses: tuple[str, ...]) -> str:
        """Back to pending with backoff, or failed for good after MAX_ATTEMPTS."""
        async with self._sessions.begin() as session:
            if item.attempts >= self._max_attempts:
                await self._fenced(session, _owned(item, *statuses), {"status": "failed"})
                return "failed"
            due = self._clock() + retry_delay(item.attempts)
            values = {"status": "pending", "due_at": due, "claimed_at": None}
            await self._fenced(session, _owned(item, *statuses), values)
        return "retry"

    async def _recipient_gone(self, item: ClaimedFollowUp) -> None:
        """They blocked the bot: inactive, and nothing more is sent until they write again."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(User)
                .where(User.id == item.user_id)
                .values(active=False)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(FollowUp)
                .where(
                    FollowUp.user_id == item.user_id,
                    or_(FollowUp.status == "pending", _owned(item, "claimed", "sending")),
                )
                .values(status="cancelled")
                .execution_options(synchronize_session=False)
            )
        log.info("a person blocked the bot; their follow-ups are cancelled")
