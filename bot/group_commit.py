"""Group commit: the updates of different people handled at the same time share a transaction.

On PostgreSQL, what an update costs the bot is mostly round trips: BEGIN, the statement that
claims the update id and locks the person, the writes, COMMIT. Each one is a socket write that
wakes the server on the other core (about 150 µs of this process's CPU here), more than the
flows and the NLU together. Under load many people's updates are in flight at once, so they
are gathered into one transaction: one statement claims every update id and locks every
person (in key order, so two batches cannot deadlock each other), the flows run for each
person, their state writes go out as one pipelined executemany, and one COMMIT ends it. With
one update in flight, a batch is that one update: nothing waits to fill a batch.

A batch is all or nothing. If anything in it fails (a flow's bug, a lost connection, a
deadlock with another process), it is rolled back and every update in it is handled again on
its own (the caller's ordinary path), so one person's fault never costs another their reply.
A person's first contact creates their rows in the batch's transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import Select, Update

from bot.privacy import erase_person
from bot.repository import (
    PROCESSED,
    SAVE_STATE,
    STATES,
    USERS,
    Encrypt,
    Locked,
    UserRow,
    apply_effect,
    create_people,
    state_changes,
    user_changes,
)
from flows.engine import EraseEverything, Event, Outcome

log = logging.getLogger(__name__)

# What a person's update became once their rows were locked: the row, the event as the flows
# saw it, and their outcome.
Stepped = tuple[UserRow, Event, Outcome]
StepLocked = Callable[[Any, Locked], Awaitable[Stepped]]
# A newcomer's `users` row (channel, language, chat_ref) from the caller's context.
Newcomer = Callable[[Any], dict[str, Any]]


@dataclass(eq=False)
class _Job:
    """One update waiting for a batch: who, which update, and where its result goes."""

    person: str
    bot_id: int
    update_id: int | None
    context: Any  # handed back to the step function as it was given
    future: asyncio.Future[Stepped | Locked | None] = field(repr=False)


class GroupCommit:
    """Runs updates in shared PostgreSQL transactions, at most `lanes` at a time.

    `step(context, locked)` is the caller's per-person work between lock and write (the flows):
    it must not write to the database itself; its outcome is written here.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        step: StepLocked,
        newcomer: Newcomer,
        encrypt: Encrypt,
        *,
        max_batch: int = 64,
        lanes: int = 2,
    ) -> None:
        """One batch per lane in flight; a batch holds at most `max_batch` people."""
        if engine.dialect.name != "postgresql":
            raise ValueError("group commit is for PostgreSQL (SQLite has one writer anyway)")
        self._engine = engine
        self._step = step
        self._newcomer = newcomer
        self._encrypt = encrypt
        self._max_batch = max(1, max_batch)
        self._lanes = max(1, lanes)
        self._queue: list[_Job] = []
        self._busy: set[str] = set()  # people in a running batch
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.batched_updates = 0
        self.fallbacks = 0

    async def run(
        self, person: str, bot_id: int, update_id: int | None, context: Any
    ) -> Stepped | Locked | None:
        """Handle one person's update in the next batch.

        The outcome, committed; a `Locked` that is not claimed for a redelivered update; None
        when the batch failed (rolled back) or the person's rows vanished meanwhile (an
        erasure): the caller then handles the update on its own.
        """
        future: asyncio.Future[Stepped | Locked | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(person, bot_id, update_id, context, future))
        self._start_batches()
        # The batch is not cancelled with one caller: the others in it still need their result.
        return await asyncio.shield(future)

    def _start_batches(self) -> None:
        while self._queue and len(self._running) < self._lanes:
            batch = self._take()
            if not batch:
                return
            task = asyncio.create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_batches()

    def _take(self) -> list[_Job]:
        """The oldest waiting updates of different people not in a running batch, one bot."""
        batch: list[_Job] = []
        people: set[str] = set()
        waiting: list[_Job] = []
        for job in self._queue:
            free = job.person not in self._busy and job.person not in people
            same_bot = not batch or job.bot_id == batch[0].bot_id
            if free and same_bot and len(batch) < self._max_batch:
                batch.append(job)
                people.add(job.person)
            else:
                waiting.append(job)
        self._queue = waiting
        self._busy |= people
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        results: dict[_Job, Stepped | Locked | None] = {}
        try:
            results = await self._transaction(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every update in it is handled again on its own
            log.warning(
                "a batch of %d updates failed (%s): each is handled on its own",
                len(batch),
                type(exc).__name__,
            )
            self.fallbacks += len(batch)
            results = {}
        finally:
            self._busy -= {job.person for job in batch}
            for job in batch:
                if not job.future.done():
                    job.future.set_result(results.get(job))

    async def _transaction(self, batch: list[_Job]) -> dict[_Job, Stepped | Locked | None]:
        """Lock everyone, run their steps, write what changed, commit once."""
        async with self._engine.connect() as conn:
            locked = await lock_people(conn, batch[0].bot_id, batch)
            # In key order, like the locks: two batches creating the same people wait in turn.
            newcomers = sorted(
                (job for job in batch if job.person not in locked), key=lambda job: job.person
            )
            if newcomers:
                # First contact: their rows are created in this transaction, then locked.
                rows = [{**self._newcomer(job.context), "id": job.person} for job in newcomers]
                await create_people(conn, rows)
                locked.update(await lock_people(conn, batch[0].bot_id, newcomers))
            # One ORM session for everyone's check-ins, follow-ups and escalations: its flush
            # sends each table's new rows together.
            async with AsyncSession(bind=conn, expire_on_commit=False) as session:
                results = await self._step_and_write(conn, session, batch, locked)
            await conn.commit()
        self.batches += 1
        self.batched_updates += sum(1 for result in results.values() if result is not None)
        return results

    async def _step_and_write(
        self,
        conn: AsyncConnection,
        session: AsyncSession,
        batch: list[_Job],
        locked: dict[str, Locked],
    ) -> dict[_Job, Stepped | Locked | None]:
        """Run each person's step, then write every change (inside the batch's transaction)."""
        results: dict[_Job, Stepped | Locked | None] = {}
        states: list[dict[str, Any]] = []
        users: dict[Update, list[dict[str, Any]]] = {}
        erased: list[str] = []
        for job in batch:
            found = locked.get(job.person)
            if found is None or found.user is None or found.state is None:
                results[job] = found  # erased meanwhile (None), or a redelivery
                continue
            stepped = await self._step(job.context, found)
            results[job] = stepped
            user, _event, outcome = stepped
            if any(isinstance(effect, EraseEverything) for effect in outcome.effects):
                erased.append(user.id)  # nothing else of this outcome may outlive it
                continue
            saved = state_changes(user, found.state, outcome)
            if saved is not None:
                states.append(saved)
            for effect in outcome.effects:
                await apply_effect(session, user, effect, self._encrypt)
            changed = user_changes(user)
            if changed is not None:
                users.setdefault(changed[0], []).append(changed[1])
        if states:
            await conn.execute(SAVE_STATE, states)
        await session.flush()  # nothing is sent when no effect added a row
        for statement, rows in users.items():
            await conn.execute(statement, rows)
        for person in erased:
            async with AsyncSession(bind=conn) as eraser:
                await erase_person(eraser, person)
        return results


_LOCK_PEOPLE: Select[Any] | None = None


def _lock_people_statement() -> Select[Any]:
    """Claim the update ids and lock the people of a batch (built once, compiled once).

    The people are locked first, in key order; only the updates of people who have rows are
    claimed, so a person without rows yet keeps their update unclaimed until they have them.
    """
    global _LOCK_PEOPLE
    if _LOCK_PEOPLE is not None:
        return _LOCK_PEOPLE
    wanted = (
        func.unnest(
            bindparam("people", type_=ARRAY(String)),
            bindparam("update_ids", type_=ARRAY(BigInteger)),
        )
        .table_valued("person", "update_id")
        .render_derived(name="wanted", with_types=False)
    )
    locked = (
        select(USERS, STATES.c.flow, STATES.c.step, STATES.c.data)
        .join_from(USERS, STATES, STATES.c.user_id == USERS.c.id)
        .where(USERS.c.id == func.any(bindparam("people", type_=ARRAY(String))))
        .order_by(USERS.c.id)
        .with_for_update(of=[USERS, STATES])
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    claimed = (
        postgresql_insert(PROCESSED)
        .from_select(
            ["bot_id", "update_id"],
            select(bindparam("bot_id", type_=BigInteger), wanted.c.update_id)
            .join_from(wanted, locked, locked.c.id == wanted.c.person)
            .where(wanted.c.update_id.is_not(None)),
        )
        .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
        .returning(PROCESSED.c.update_id)
        .cte("claimed")
    )
    _LOCK_PEOPLE = (
        select(
            locked,
            wanted.c.update_id.label("wanted_update_id"),
            claimed.c.update_id.label("claim_id"),
        )
        .join_from(locked, wanted, wanted.c.person == locked.c.id)
        .outerjoin(claimed, claimed.c.update_id == wanted.c.update_id)
    )
    return _LOCK_PEOPLE


async def lock_people(conn: AsyncConnection, bot_id: int, jobs: list[_Job]) -> dict[str, Locked]:
    """Each person with rows, locked, with their update claimed (or found already handled)."""
    params = {
        "people": [job.person for job in jobs],
        "update_ids": [job.update_id for job in jobs],
        "bot_id": bot_id,
    }
    rows = (await conn.execute(_lock_people_statement(), params)).mappings().all()
    found: dict[str, Locked] = {}
    for row in rows:
        if row["wanted_update_id"] is not None and row["claim_id"] is None:
            found[row["id"]] = Locked(claimed=False)
            continue
        found[row["id"]] = Locked.from_row(row)
    return found
