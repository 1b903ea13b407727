"""Claiming and delivering follow-ups on SQLite and PostgreSQL: once each, re-checking the person,
quiet hours, pauses, a blocked bot, misfires, retries, fencing; and the housekeeping jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import housekeeping
from bot.db.engine import create_engine, sessionmaker
from bot.db.models import CheckIn, FollowUp, ProcessedUpdate, User
from bot.followups import FollowUpDeliverer, claim_due_followups
from bot.identity import Identity
from bot.scheduler import FollowUpScheduler, SchedulerSettings
from bot.sender import RecipientGone, SendFailed, SendUncertain, run_before_write
from bot.service import KindredService
from flows.engine import Reply
from nlu.pipeline import NluPipeline
from tests import isolated_db

# Tuesday 1 December 2026, 12:00 UTC = 12:00 in London.
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# Claiming acts on every due row in the table: this module needs a database of its own.
fresh_db_url = isolated_db.fresh_db_url


@pytest.fixture
async def own_engine(fresh_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the module's database, emptied of people before each test."""
    engine = create_engine(fresh_db_url)
    async with sessionmaker(engine).begin() as session:
        await session.execute(delete(User))
        await session.execute(delete(ProcessedUpdate))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(own_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the module's database."""
    return sessionmaker(own_engine)


class FakeSender:
    """Records what would be sent; can fail the way Telegram does."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, tuple[Reply, ...]]] = []
        self.fail_with: Exception | None = None
        self.statuses_at_write: list[str] = []
        self.sessions: async_sessionmaker[AsyncSession] | None = None

    async def send(self, chat_id: int, replies: tuple[Reply, ...]) -> None:
        """Fire the before-write hook like the real limiter, then record or fail."""
        await run_before_write()
        if self.sessions is not None:
            async with self.sessions() as session:
                self.statuses_at_write += list(await session.scalars(select(FollowUp.status)))
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((chat_id, replies))


class Clock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now


@pytest.fixture
def sender() -> FakeSender:
    """A fresh fake sender."""
    return FakeSender()


@pytest.fixture
def clock() -> Clock:
    """Noon in London."""
    return Clock(NOON)


@pytest.fixture
def deliverer(
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    nlu_pipeline: NluPipeline,
    sender: FakeSender,
    clock: Clock,
) -> FollowUpDeliverer:
    """The deliverer with the real flows and a fake sender."""
    service = KindredService(sessions, identity, nlu_pipeline)
    return FollowUpDeliverer(
        sessions, service, identity, sender, clock, batch=10, concurrency=3, max_attempts=3
    )


async def add_person(
    sessions: async_sessionmaker[AsyncSession], identity: Identity, chat_id: int, **fields: Any
) -> str:
    """A Telegram person in the UK who agreed to check-ins."""
    user_id = uuid.uuid4().hex
    values: dict[str, Any] = {
        "id": user_id,
        "channel": "telegram",
        "chat_ref": identity.encrypt(str(chat_id)),
        "language": "en",
        "country": "United Kingdom",
        "consent_checkins": True,
        "onboarded": True,
        "active": True,
    }
    values.update(fields)
    async with sessions.begin() as session:
        session.add(User(**values))
    return user_id


async def add_followup(
    sessions: async_sessionmaker[AsyncSession],
    user_id: str,
    kind: str,
    due_at: datetime,
    status: str = "pending",
    **fields: Any,
) -> int:
    """A follow-up row."""
    async with sessions.begin() as session:
        row = FollowUp(
            user_id=user_id,
            kind=kind,
            due_at=due_at,
            status=status,
            attempts=fields.pop("attempts", 0),
            idempotency_key=uuid.uuid4().hex,
            payload=fields.pop("payload", {}),
            **fields,
        )
        session.add(row)
        await session.flush()
        return row.id


async def rows(sessions: async_sessionmaker[AsyncSession], user_id: str) -> list[FollowUp]:
    """The person's follow-ups, by due time."""
    async with sessions() as session:
        found = await session.scalars(
            select(FollowUp).where(FollowUp.user_id == user_id).order_by(FollowUp.due_at)
        )
        return list(found)


def utc(value: datetime) -> datetime:
    """Aware UTC (SQLite returns naive)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- claiming ---------------------------------------------------------------------------------


async def test_claim_takes_due_rows_oldest_first_and_leaves_future_ones(
    sessions: async_sessionmaker[AsyncSession], identity: Identity
) -> None:
    person = await add_person(sessions, identity, 1)
    later = await add_followup(sessions, person, "reminder", NOON - timedelta(minutes=1))
    first = await add_followup(sessions, person, "reminder", NOON - timedelta(minutes=5))
    await add_followup(sessions, person, "reminder", NOON + timedelta(minutes=1))
    async with sessions.begin() as session:
        claimed = await claim_due_followups(session, NOON, 10)
    assert [c.id for c in claimed] == [first, later]
    assert all(c.attempts == 1 for c in claimed)
    async with sessions.begin() as session:
        assert await claim_due_followups(session, NOON, 10) == []


async def test_a_dead_process_s_claim_is_taken_over_after_the_lease_but_never_a_sending_row(
    sessions: async_sessionmaker[AsyncSession], identity: Identity
) -> None:
    person = await add_person(sessions, identity, 2)
    claimed = await add_followup(
        sessions, person, "reminder", NOON, "claimed", claimed_at=NOON, attempts=1
    )
    await add_followup(sessions, person, "reminder", NOON, "sending", claimed_at=NOON, attempts=1)
    lease = timedelta(seconds=30)
    async with sessions.begin() as session:
        assert await claim_due_followups(session, NOON + timedelta(seconds=20), 10, lease) == []
    async with sessions.begin() as session:
        taken = await claim_due_followups(session, NOON + timedelta(seconds=31), 10, lease)
    assert [(c.id, c.attempts) for c in taken] == [(claimed, 2)]


@pytest.mark.postgres
async def test_concurrent_claims_on_postgres_never_share_a_row(
    sessions: async_sessionmaker[AsyncSession], identity: Identity, fresh_db_url: str
) -> None:
    if not fresh_db_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    person = await add_person(sessions, identity, 3)
    for minute in range(60):
        await add_followup(sessions, person, "reminder", NOON - timedelta(minutes=minute))

    async def claim() -> list[int]:
        async with sessions.begin() as session:
            got = await claim_due_followups(session, NOON, 7)
            await asyncio.sleep(0.05)  # hold the row locks while the others claim
        return [c.id for c in got]

    batches = await asyncio.gather(*(claim() for _ in range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(ids) == len(set(ids)) == 56


# --- delivering -------------------------------------------------------------------------------


async def test_a_due_check_back_is_sent_once(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    person = await add_person(sessions, identity, 42)
    await add_followup(sessions, person, "craving_checkback", NOON - timedelta(minutes=1))
    sender.sessions = sessions
    assert await deliverer.run_once() == 1
    assert [chat for chat, _ in sender.sent] == [42]
    assert "craving" in sender.sent[0][1][0].text
    assert "sending" in sender.statuses_at_write  # marked before the write, not after
    [row] = await rows(sessions, person)
    assert row.status == "sent" and row.sent_at is not None
    assert await deliverer.run_once() == 0 and len(sender.sent) == 1


async def test_quiet_hours_move_a_check_in_to_the_morning_but_not_an_asked_check_back(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
    clock: Clock,
) -> None:
    clock.now = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 23:00 in London
    person = await add_person(sessions, identity, 43)
    checkup = await add_followup(sessions, person, "recovery_checkup", clock.now)
    await add_followup(sessions, person, "craving_checkback", clock.now)
    await deliverer.run_once()
    assert len(sender.sent) == 1 and "craving" in sender.sent[0][1][0].text
    moved = next(r for r in await rows(sessions, person) if r.id == checkup)
    assert moved.status == "pending" and moved.attempts == 0
    assert utc(moved.due_at) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


async def test_paused_or_no_longer_consenting_people_are_not_messaged(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    paused = await add_person(sessions, identity, 44, paused_until=NOON + timedelta(days=7))
    await add_followup(sessions, paused, "reminder", NOON)
    daily = await add_followup(
        sessions, paused, "daily_checkin", NOON, payload={"local_time": "12:00"}
    )
    withdrawn = await add_person(sessions, identity, 45, consent_checkins=False)
    await add_followup(sessions, withdrawn, "recovery_checkup", NOON)
    await deliverer.run_once()
    assert sender.sent == []
    statuses = {r.id: r.status for r in await rows(sessions, paused)}
    assert statuses.pop(daily) == "skipped"
    # The daily rhythm goes on after the pause: tomorrow's row is planned (and skipped then too).
    assert sorted(statuses.values()) == ["cancelled", "pending"]
    assert [r.status for r in await rows(sessions, withdrawn)] == ["cancelled"]


async def test_a_blocked_bot_marks_the_person_inactive_and_cancels_everything(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    person = await add_person(sessions, identity, 46)
    await add_followup(sessions, person, "reminder", NOON)
    await add_followup(sessions, person, "recovery_checkup", NOON + timedelta(days=30))
    sender.fail_with = RecipientGone("Forbidden: bot was blocked by the user")
    await deliverer.run_once()
    assert {r.status for r in await rows(sessions, person)} == {"cancelled"}
    async with sessions() as session:
        user = await session.get(User, person)
        assert user is not None and user.active is False


async def test_misfire_an_old_check_back_is_skipped_a_daily_one_coalesces_to_the_next_day(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    person = await add_person(sessions, identity, 47)
    recent = await add_followup(sessions, person, "craving_checkback", NOON - timedelta(minutes=40))
    stale = await add_followup(sessions, person, "craving_checkback", NOON - timedelta(hours=3))
    missed = await add_followup(
        sessions,
        person,
        "daily_checkin",
        NOON - timedelta(days=2, hours=3),
        payload={"local_time": "09:00"},
    )
    await deliverer.run_once()
    by_id = {r.id: r for r in await rows(sessions, person)}
    assert by_id[recent].status == "sent" and len(sender.sent) == 1
    assert by_id[stale].status == "skipped" and by_id[missed].status == "skipped"
    [nxt] = [r for r in by_id.values() if r.status == "pending"]
    assert nxt.kind == "daily_checkin"
    assert utc(nxt.due_at) == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def test_a_transient_failure_is_retried_with_backoff_then_given_up(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
    clock: Clock,
) -> None:
    person = await add_person(sessions, identity, 48)
    await add_followup(sessions, person, "reminder", NOON)
    sender.fail_with = SendFailed("Bad Gateway")
    await deliverer.run_once()
    [row] = await rows(sessions, person)
    assert row.status == "pending" and utc(row.due_at) == NOON + timedelta(seconds=30)
    for _ in range(3):
        clock.now += timedelta(minutes=10)
        await deliverer.run_once()
    [row] = await rows(sessions, person)
    assert row.status == "failed" and row.attempts == 3


async def test_a_maybe_delivered_message_is_unconfirmed_and_never_sent_again(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
    clock: Clock,
) -> None:
    person = await add_person(sessions, identity, 49)
    await add_followup(sessions, person, "reminder", NOON)
    sender.fail_with = SendUncertain("Timed out")
    await deliverer.run_once()
    clock.now += timedelta(hours=1)
    assert await deliverer.run_once() == 0
    assert [r.status for r in await rows(sessions, person)] == ["unconfirmed"]


async def test_a_process_that_lost_its_claim_sends_nothing(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    person = await add_person(sessions, identity, 50)
    await add_followup(sessions, person, "reminder", NOON)
    async with sessions.begin() as session:
        [mine] = await claim_due_followups(session, NOON, 10)
        # Another process took the row over after our lease ran out.
        await session.execute(update(FollowUp).values(attempts=FollowUp.attempts + 1))
    assert await deliverer.deliver(mine) == "lost_claim"
    assert sender.sent == []


async def test_erased_people_and_console_people_are_skipped(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    console = await add_person(sessions, identity, 51, channel="console", chat_ref=None)
    await add_followup(sessions, console, "reminder", NOON)
    await deliverer.run_once()
    assert sender.sent == [] and [r.status for r in await rows(sessions, console)] == ["cancelled"]


async def test_the_scheduler_delivers_on_its_interval(
    deliverer: FollowUpDeliverer,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    sender: FakeSender,
) -> None:
    person = await add_person(sessions, identity, 52)
    await add_followup(sessions, person, "reminder", NOON)
    settings = SchedulerSettings(interval=timedelta(seconds=0.2), housekeeping=False)
    scheduler = FollowUpScheduler(sessions, deliverer, settings)
    await scheduler.start()
    try:
        for _ in range(50):
            if sender.sent:
                break
            await asyncio.sleep(0.1)
    finally:
        await scheduler.stop()
    assert len(sender.sent) == 1


# --- housekeeping -----------------------------------------------------------------------------


async def test_housekeeping_plans_checkups_one_reengagement_and_milestones(
    sessions: async_sessionmaker[AsyncSession], identity: Identity
) -> None:
    now = NOON
    quiet = await add_person(
        sessions, identity, 60, last_seen_at=now - timedelta(days=40), consent_at=now
    )
    starter = await add_person(
        sessions, identity, 61, recovery_start=date(2026, 11, 1), consent_checkins=False
    )
    paused = await add_person(sessions, identity, 62, paused_until=now + timedelta(days=3))
    first = await housekeeping.plan_proactive_followups(sessions, now)
    assert first["recovery_checkup"] >= 1 and first["reengagement"] == 1
    assert first["milestone"] == 1
    kinds = sorted(r.kind for r in await rows(sessions, quiet))
    assert kinds == ["recovery_checkup", "reengagement"]
    [milestone] = await rows(sessions, starter)
    assert milestone.kind == "milestone" and milestone.payload["days"] == 60
    assert await rows(sessions, paused) == []
    # Running again plans nothing new, even once the re-engagement went out.
    async with sessions.begin() as session:
        await session.execute(update(FollowUp).values(status="sent"))
    again = await housekeeping.plan_proactive_followups(sessions, now)
    assert again["reengagement"] == 0


async def test_a_lapse_brings_the_next_checkup_forward(
    sessions: async_sessionmaker[AsyncSession], identity: Identity
) -> None:
    person = await add_person(sessions, identity, 63)
    far = await add_followup(sessions, person, "recovery_checkup", NOON + timedelta(days=60))
    async with sessions.begin() as session:
        session.add(
            CheckIn(user_id=person, kind="lapse", used=True, created_at=NOON + timedelta(hours=1))
        )
    result = await housekeeping.plan_proactive_followups(sessions, NOON + timedelta(hours=2))
    assert result["tightened"] == 1
    row = next(r for r in await rows(sessions, person) if r.id == far)
    assert utc(row.due_at) == datetime(2026, 12, 8, 18, 0, tzinfo=UTC)


async def test_housekeeping_tidies_up(
    sessions: async_sessionmaker[AsyncSession], identity: Identity
) -> None:
    now = datetime.now(UTC)
    gone = await add_person(sessions, identity, 70, active=False)
    await add_followup(sessions, gone, "reminder", now + timedelta(hours=1))
    live = await add_person(sessions, identity, 71)
    await add_followup(
        sessions, live, "reminder", now, "sending", claimed_at=now - timedelta(minutes=5)
    )
    async with sessions.begin() as session:
        session.add(ProcessedUpdate(bot_id=1, update_id=1, processed_at=now - timedelta(days=8)))
        session.add(ProcessedUpdate(bot_id=1, update_id=2, processed_at=now))
    assert await housekeeping.cancel_followups_of_inactive(sessions) == 1
    assert await housekeeping.sweep_stale_sends(sessions, now) == 1
    assert await housekeeping.purge_processed_updates(sessions, now) == 1
    assert [r.status for r in await rows(sessions, live)] == ["unconfirmed"]
