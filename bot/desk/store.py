"""The desk's reads and writes: invites, volunteers, atomic claims, the queue, audit, statistics."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import metrics
from bot.db.models import AuditEntry, Escalation, User, Volunteer, VolunteerInvite
from bot.desk.models import DeskTicket
from bot.desk.names import friendly_name
from bot.repository import utcnow

PERSON_CHANNEL = "telegram"
# A volunteer's Telegram id is hashed under its own channel name, so the same account as a
# person and as a volunteer has two unrelated pseudonyms.
VOLUNTEER_CHANNEL = "telegram-volunteer"
ROLES = ("volunteer", "coordinator")
OPEN, CLAIMED, CLOSED, WITHDRAWN, MERGED = "open", "claimed", "closed", "withdrawn", "merged"
WAIT_SAMPLE = 20
WAIT_SAMPLE_DAYS = 30
MAX_NAME_BUMPS = 1000


def aware(moment: datetime) -> datetime:
    """A stored time as aware UTC (SQLite hands back naive datetimes, PostgreSQL aware ones)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def invite_hash(code: str) -> str:
    """How an invite code is stored: only its SHA-256, as `kindred volunteer invite` does."""
    return hashlib.sha256(code.strip().encode()).hexdigest()


async def create_invite(session: AsyncSession, role: str) -> str:
    """A new one-time invite code (returned once, stored only as a hash)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    code = secrets.token_urlsafe(12)
    session.add(VolunteerInvite(code_hash=invite_hash(code), role=role))
    await session.flush()
    return code


@dataclass(frozen=True)
class Redeemed:
    """What redeeming an invite did: joined, promoted, already (on the desk), suspended, invalid."""

    outcome: str
    volunteer: Volunteer | None = None


async def volunteer_by_pseudonym(session: AsyncSession, pseudonym: str) -> Volunteer | None:
    """The volunteer with this pseudonym, if any (active or not)."""
    return await session.scalar(select(Volunteer).where(Volunteer.pseudonym == pseudonym))


async def volunteer_named(session: AsyncSession, name: str) -> Volunteer | None:
    """A volunteer by their desk name, case and spacing forgiven."""
    wanted = " ".join(name.split()).lower()
    if not wanted:
        return None
    return await session.scalar(
        select(Volunteer).where(func.lower(Volunteer.display_name) == wanted)
    )


async def _free_name(session: AsyncSession, pseudonym: str) -> str:
    """The volunteer's generated name, moved on until no other volunteer has it."""
    for bump in range(MAX_NAME_BUMPS):
        name = friendly_name(pseudonym, bump)
        if await volunteer_named(session, name) is None:
            return name
    raise RuntimeError("no free volunteer name")  # pragma: no cover - 400k names


async def redeem_invite(
    session: AsyncSession, code: str, pseudonym: str, chat_ref: str
) -> Redeemed:
    """Use a one-time code: the first redemption wins, atomically; a used code never works."""
    existing = await volunteer_by_pseudonym(session, pseudonym)
    if existing is not None and not existing.active:
        return Redeemed("suspended", existing)  # only a coordinator can lift a suspension
    digest = invite_hash(code)
    invite = await session.get(VolunteerInvite, digest)
    if invite is None or invite.redeemed_at is not None:
        return Redeemed("invalid")
    promotes = existing is not None and invite.role == "coordinator" != existing.role
    if existing is not None and not promotes:
        return Redeemed("already", existing)  # keep the code for someone who needs it
    used = await session.execute(
        update(VolunteerInvite)
        .where(VolunteerInvite.code_hash == digest, VolunteerInvite.redeemed_at.is_(None))
        .values(redeemed_at=utcnow())
    )
    if rowcount(used) != 1:
        return Redeemed("invalid")  # redeemed a moment ago by someone else
    if existing is not None:
        existing.role = "coordinator"
        existing.chat_ref = chat_ref
        return Redeemed("promoted", existing)
    volunteer = Volunteer(
        pseudonym=pseudonym,
        display_name=await _free_name(session, pseudonym),
        chat_ref=chat_ref,
        role=invite.role,
        active=True,
        on_shift=False,
    )
    try:
        async with session.begin_nested():
            session.add(volunteer)
            await session.flush()
    except IntegrityError:
        return Redeemed("invalid")
    return Redeemed("joined", volunteer)


def rowcount(result: Any) -> int:
    """Rows an UPDATE changed (0 when the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)


async def on_shift_count(session: AsyncSession) -> int:
    """Active volunteers on shift now."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Volunteer)
            .where(Volunteer.active.is_(True), Volunteer.on_shift.is_(True))
        )
        or 0
    )


async def coordinators(session: AsyncSession) -> list[Volunteer]:
    """Active coordinators that can be messaged privately."""
    return list(
        await session.scalars(
            select(Volunteer).where(
                Volunteer.active.is_(True),
                Volunteer.role == "coordinator",
                Volunteer.chat_ref.is_not(None),
            )
        )
    )


def audit(
    session: AsyncSession, actor: str, action: str, subject: str | None, **details: Any
) -> None:
    """One audit entry: actors and subjects are desk names and ticket numbers, never ids."""
    session.add(AuditEntry(actor=actor, action=action, subject=subject, details=details))


def ticket_ref(escalation_id: int) -> str:
    """How the audit log names a ticket."""
    return f"ticket:{escalation_id}"


@dataclass(frozen=True)
class Claim:
    """The result of pressing Claim: claimed (by you), taken (by someone else) or closed."""

    outcome: str
    escalation: Escalation | None = None
    holder: str | None = None
    claim_seconds: int | None = None


async def claim(
    session: AsyncSession, escalation_id: int, volunteer: Volunteer, now: datetime
) -> Claim:
    """First on-shift volunteer wins: one conditional UPDATE decides, whatever the concurrency."""
    escalation = await session.get(Escalation, escalation_id)
    if escalation is None:
        return Claim("closed")
    # Lock the person first, as the person's own updates do, so the two never deadlock.
    await session.scalar(select(User.id).where(User.id == escalation.user_id).with_for_update())
    won = await session.execute(
        update(Escalation)
        .where(Escalation.id == escalation_id, Escalation.status == OPEN)
        .values(status=CLAIMED, claimed_by=volunteer.id, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(escalation)
    if rowcount(won) != 1:
        if escalation.status != CLAIMED or escalation.claimed_by is None:
            return Claim("closed", escalation)
        holder = await session.get(Volunteer, escalation.claimed_by)
        return Claim("taken", escalation, holder.display_name if holder else None)
    seconds = max(0, math.floor((now - aware(escalation.created_at)).total_seconds()))
    metrics.escalation_claimed(seconds)
    ticket = await session.get(DeskTicket, escalation_id)
    if ticket is not None:
        ticket.claim_seconds = seconds
    audit(
        session,
        volunteer.display_name,
        "claimed",
        ticket_ref(escalation_id),
        claim_seconds=seconds,
    )
    return Claim("claimed", escalation, volunteer.display_name, seconds)


@dataclass(frozen=True)
class Link:
    """A person's live tie to the desk: an open or claimed request, or a report to write."""

    escalation_id: int
    status: str
    awaiting_report: bool


async def person_links(session: AsyncSession, user_id: str) -> list[Link]:
    """The person's open and claimed requests and any report they were asked for (one query)."""
    rows = await session.execute(
        select(Escalation.id, Escalation.status, DeskTicket.awaiting_report)
        .outerjoin(DeskTicket, DeskTicket.escalation_id == Escalation.id)
        .where(
            Escalation.user_id == user_id,
            or_(Escalation.status.in_((OPEN, CLAIMED)), DeskTicket.awaiting_report.is_(True)),
        )
        .order_by(Escalation.id)
    )
    return [Link(int(i), str(s), bool(r)) for i, s, r in rows]


async def pending_announcements(
    session: AsyncSession, now: datetime, stale_after: timedelta, user_id: str | None = None
) -> list[int]:
    """Open requests the desk has not shown yet, or whose priority rose since: most urgent first."""
    query = (
        select(Escalation.id)
        .join(User, User.id == Escalation.user_id)
        .outerjoin(DeskTicket, DeskTicket.escalation_id == Escalation.id)
        .where(
            Escalation.status == OPEN,
            User.channel == PERSON_CHANNEL,
            User.chat_ref.is_not(None),
            or_(
                DeskTicket.escalation_id.is_(None),
                and_(
                    DeskTicket.announced_at.is_(None),
                    DeskTicket.announce_started_at < now - stale_after,
                ),
                and_(
                    DeskTicket.announced_at.is_not(None),
                    DeskTicket.announced_priority > Escalation.priority,
                ),
            ),
        )
        .order_by(Escalation.priority, Escalation.created_at, Escalation.id)
        .limit(20)
    )
    if user_id is not None:
        query = query.where(Escalation.user_id == user_id)
    return [int(i) for i in await session.scalars(query)]


async def due_for_ping(
    session: AsyncSession, now: datetime, after: timedelta, max_pings: int
) -> list[int]:
    """Announced requests nobody claimed for `after`: most urgent first."""
    last = func.coalesce(DeskTicket.last_ping_at, DeskTicket.announced_at)
    rows = await session.scalars(
        select(Escalation.id)
        .join(DeskTicket, DeskTicket.escalation_id == Escalation.id)
        .where(
            Escalation.status == OPEN,
            Escalation.topic_id.is_not(None),
            DeskTicket.announced_at.is_not(None),
            DeskTicket.pings < max_pings,
            last <= now - after,
        )
        .order_by(Escalation.priority, Escalation.created_at, Escalation.id)
        .limit(20)
    )
    return [int(i) for i in rows]


async def open_queue(session: AsyncSession) -> list[Escalation]:
    """Open requests on the desk, most urgent first, then the longest waiting."""
    return list(
        await session.scalars(
            select(Escalation)
            .join(DeskTicket, DeskTicket.escalation_id == Escalation.id)
            .where(Escalation.status == OPEN, DeskTicket.announced_at.is_not(None))
            .order_by(Escalation.priority, Escalation.created_at, Escalation.id)
        )
    )


async def claimed_count(session: AsyncSession) -> int:
    """Requests a volunteer is talking through right now."""
    return int(
        await session.scalar(
            select(func.count()).select_from(Escalation).where(Escalation.status == CLAIMED)
        )
        or 0
    )


async def expected_wait_minutes(
    session: AsyncSession, now: datetime, default: int, waited: float = 0.0
) -> int:
    """How much longer a request is likely to wait, in whole minutes.

    The median of recent times to claim, counting only requests that waited at least as long as
    this one already has (minus that wait): an honest answer both at the start and after a ping.
    The default until the desk has such claims to go on.
    """
    recent = list(
        await session.scalars(
            select(DeskTicket.claim_seconds)
            .join(Escalation, Escalation.id == DeskTicket.escalation_id)
            .where(
                DeskTicket.claim_seconds.is_not(None),
                DeskTicket.claim_seconds > waited,
                Escalation.created_at >= now - timedelta(days=WAIT_SAMPLE_DAYS),
            )
            .order_by(Escalation.created_at.desc())
            .limit(WAIT_SAMPLE)
        )
    )
    remaining = [s - waited for s in recent if s is not None]
    if not remaining:
        return default
    return max(1, math.ceil(median(remaining) / 60))


def _percentile(values: list[int], share: float) -> int | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


async def claim_stats(session: AsyncSession, since: datetime) -> dict[str, Any]:
    """Requests since a moment: how many, how fast they were claimed, ratings and reports."""
    rows = (
        await session.execute(
            select(
                Escalation.status,
                Escalation.rating,
                DeskTicket.claim_seconds,
                DeskTicket.reported_at,
            )
            .join(DeskTicket, DeskTicket.escalation_id == Escalation.id)
            .where(Escalation.created_at >= since, Escalation.status != MERGED)
        )
    ).all()
    seconds = [int(r.claim_seconds) for r in rows if r.claim_seconds is not None]
    ratings = [int(r.rating) for r in rows if r.rating is not None]
    return {
        "requests": len(rows),
        "claimed": len(seconds),
        "unclaimed_open": sum(1 for r in rows if r.status == OPEN),
        "withdrawn": sum(1 for r in rows if r.status == WITHDRAWN),
        "claim_seconds_median": int(median(seconds)) if seconds else None,
        "claim_seconds_p90": _percentile(seconds, 0.9),
        "claim_seconds_max": max(seconds) if seconds else None,
        "ratings": len(ratings),
        "rating_mean": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "reports": sum(1 for r in rows if r.reported_at is not None),
    }
