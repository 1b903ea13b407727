"""Periodic jobs: retention, cleaning up after people who left, and planning the follow-ups
nobody asks for in the moment (recovery checkups, one re-engagement, milestones).

Each job is bounded (`limit` rows a run) so a large deployment spreads work over several runs,
and idempotent (deterministic keys, NOT EXISTS checks), so running it in every process at once
is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import CheckIn, FollowUp, InboxUpdate, ProcessedUpdate, User
from bot.followup_rules import (
    HIGH_CRAVING,
    MILESTONE,
    RECOVERY_CHECKUP,
    REENGAGE_AFTER,
    REENGAGEMENT,
    CheckInFacts,
    as_utc,
    checkup_signals,
    plan_milestone,
    plan_recovery_checkup,
    plan_reengagement,
    tightened_checkup_due,
)
from bot.followups import DEFAULT_LEASE, insert_planned
from bot.inbox import MAX_AGE as INBOX_MAX_AGE
from flows.timezones import person_zone

__all__ = [
    "cancel_followups_of_inactive",
    "plan_proactive_followups",
    "purge_old_followups",
    "purge_processed_updates",
    "purge_stale_inbox",
    "sweep_stale_sends",
]

log = logging.getLogger(__name__)

PROCESSED_UPDATES_KEPT = timedelta(days=7)  # Telegram redelivers for at most 24 hours
FOLLOWUPS_KEPT = timedelta(days=90)
OPEN = ("pending", "claimed", "sending")
DONE = ("sent", "skipped", "cancelled", "failed", "unconfirmed")


async def purge_processed_updates(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Forget update ids older than a week (only needed to drop Telegram's redeliveries)."""
    async with sessions.begin() as session:
        result = await session.execute(
            delete(ProcessedUpdate).where(
                ProcessedUpdate.processed_at < now - PROCESSED_UPDATES_KEPT
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_stale_inbox(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Drop inbox updates nobody replayed within a day (a worker that never restarted): they
    hold people's messages, encrypted, and are too old to answer."""
    async with sessions.begin() as session:
        result = await session.execute(
            delete(InboxUpdate).where(InboxUpdate.received_at < now - INBOX_MAX_AGE)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_old_followups(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Delete finished follow-ups after 90 days; a re-engagement row stays as its own marker."""
    async with sessions.begin() as session:
        result = await session.execute(
            delete(FollowUp).where(
                FollowUp.status.in_(DONE),
                FollowUp.due_at < now - FOLLOWUPS_KEPT,
                FollowUp.kind != REENGAGEMENT,
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def cancel_followups_of_inactive(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Pending follow-ups of people marked inactive (blocked the bot) are cancelled."""
    inactive = select(User.id).where(User.active.is_(False))
    async with sessions.begin() as session:
        result = await session.execute(
            update(FollowUp)
            .where(FollowUp.status == "pending", FollowUp.user_id.in_(inactive))
            .values(status="cancelled")
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def sweep_stale_sends(
    sessions: async_sessionmaker[AsyncSession], now: datetime, lease: timedelta = DEFAULT_LEASE
) -> int:
    """A process died mid-send: the row becomes unconfirmed, never sent again (at most once)."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(FollowUp)
            .where(FollowUp.status == "sending", FollowUp.claimed_at < now - lease)
            .values(status="unconfirmed")
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _reachable(now: datetime) -> Any:
    """People we may write to first: active, on Telegram, not paused."""
    return and_(
        User.active.is_(True),
        User.onboarded.is_(True),
        User.channel == "telegram",
        or_(User.paused_until.is_(None), User.paused_until < now),
    )


def _has_followup(kind: str, statuses: tuple[str, ...] | None = None) -> Any:
    query = select(FollowUp.id).where(FollowUp.user_id == User.id, FollowUp.kind == kind)
    if statuses is not None:
        query = query.where(FollowUp.status.in_(statuses))
    return exists(query)


async def _reachable_people(
    session: AsyncSession, now: datetime, limit: int, *conditions: Any
) -> Sequence[User]:
    """Up to `limit` people we may write to first who also meet `conditions`."""
    return (
        await session.scalars(select(User).where(_reachable(now), *conditions).limit(limit))
    ).all()


async def plan_proactive_followups(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int = 500
) -> dict[str, int]:
    """Plan checkups, re-engagements and milestones; bring checkups forward after a lapse."""
    planned = {"recovery_checkup": 0, "tightened": 0, "reengagement": 0, "milestone": 0}
    async with sessions.begin() as session:
        planned["recovery_checkup"] = await _plan_checkups(session, now, limit)
        planned["tightened"] = await _tighten_checkups(session, now, limit)
        planned["reengagement"] = await _plan_reengagements(session, now, limit)
        planned["milestone"] = await _plan_milestones(session, now, limit)
    if any(planned.values()):
        log.info("planned follow-ups: %s", planned)
    return planned


async def _plan_checkups(session: AsyncSession, now: datetime, limit: int) -> int:
    users = await _reachable_people(
        session, now, limit, User.consent_checkins.is_(True), ~_has_followup(RECOVERY_CHECKUP, OPEN)
    )
    count = 0
    for user in users:
        zone = person_zone(user.timezone, user.country)
        last = await session.scalar(
            select(FollowUp)
            .where(FollowUp.user_id == user.id, FollowUp.kind == RECOVERY_CHECKUP)
            .order_by(FollowUp.due_at.desc())
            .limit(1)
        )
        since = as_utc(last.due_at if last else (user.consent_at or user.created_at))
        previous = int(last.payload.get("interval_days") or 0) or None if last else None
        rows = await session.execute(
            select(CheckIn.kind, CheckIn.used, CheckIn.craving_level, CheckIn.answers).where(
                CheckIn.user_id == user.id, CheckIn.created_at >= since
            )
        )
        signals = checkup_signals(CheckInFacts(*row) for row in rows)
        plan = plan_recovery_checkup(user.id, since, previous, signals, zone)
        if plan.due_at < now:  # long paused or away: count from today, not from back then
            plan = plan_recovery_checkup(user.id, now, previous, signals, zone)
        count += await insert_planned(session, user.id, plan)
    return count


async def _tighten_checkups(session: AsyncSession, now: datetime, limit: int) -> int:
    signal = or_(
        CheckIn.kind == "lapse", CheckIn.used.is_(True), CheckIn.craving_level >= HIGH_CRAVING
    )
    rows = (
        await session.execute(
            select(FollowUp, func.min(CheckIn.created_at))
            .join(CheckIn, CheckIn.user_id == FollowUp.user_id)
            .where(
                FollowUp.kind == RECOVERY_CHECKUP,
                FollowUp.status == "pending",
                CheckIn.created_at > FollowUp.created_at,
                signal,
            )
            .group_by(FollowUp.id)
            .limit(limit)
        )
    ).all()
    count = 0
    for row, signal_at in rows:
        user = await session.get(User, row.user_id)
        if user is None:
            continue
        earlier = tightened_checkup_due(
            row.due_at, signal_at, person_zone(user.timezone, user.country)
        )
        if earlier is not None and earlier > now:
            row.due_at = earlier
            row.payload = {**row.payload, "interval_days": 14, "tightened": True}
            count += 1
    return count


async def _plan_reengagements(session: AsyncSession, now: datetime, limit: int) -> int:
    users = await _reachable_people(
        session,
        now,
        limit,
        User.consent_checkins.is_(True),
        User.last_seen_at < now - REENGAGE_AFTER,
        ~_has_followup(REENGAGEMENT),
    )
    count = 0
    for user in users:
        zone = person_zone(user.timezone, user.country)
        plan = plan_reengagement(user.id, user.last_seen_at, now, False, zone)
        if plan is not None:
            count += await insert_planned(session, user.id, plan)
    return count


async def _plan_milestones(session: AsyncSession, now: datetime, limit: int) -> int:
    users = await _reachable_people(
        session, now, limit, User.recovery_start.is_not(None), ~_has_followup(MILESTONE, OPEN)
    )
    count = 0
    for user in users:
        assert user.recovery_start is not None
        zone = person_zone(user.timezone, user.country)
        plan = plan_milestone(user.id, user.recovery_start, now, zone)
        if plan is not None:
            count += await insert_planned(session, user.id, plan)
    return count
