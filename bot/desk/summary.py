"""What a volunteer sees before claiming: a friendly name, language, reason, trend and risk flags.

Built from stored rows only, in words. Never a Telegram id, a name, a username, a phone number
or anything the person wrote.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import mean

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CheckIn, Escalation, User
from bot.desk.names import friendly_name
from bot.desk.store import aware
from flows.copy import plural, text

TREND_DAYS = 14
LAPSE_DAYS = 7
STRONG_CRAVING = 8
STRONG_CRAVING_HOURS = 48
REPEAT_DAYS = 30
# A change of at least this much between the earlier and the latest check-ins is a trend.
CRAVING_STEP = 1.5
MOOD_STEP = 0.75


@dataclass(frozen=True)
class Card:
    """Everything the desk shows about one request."""

    ticket: int
    priority: int
    reason: str
    person: str
    language: str
    country: str | None
    trend: str
    flags: tuple[str, ...]
    opened: datetime


def desk_text(key: str, **params: object) -> str:
    """Volunteer-facing words (the desk works in the deployment's default language)."""
    return text("en", key, **params)


def desk_plural(key: str, n: int, **params: object) -> str:
    """Volunteer-facing words that count something, in the form that fits n."""
    return plural("en", key, n, **params)


def reason_label(reason: str) -> str:
    """A short, plain label for an escalation's reason."""
    try:
        return desk_text(f"desk.reason.{reason}")
    except KeyError:
        return reason.replace("_", " ")


def topic_title(ticket: int, priority: int, reason: str) -> str:
    """The forum topic's name: ticket number, priority and reason, nothing else."""
    return desk_text(
        "desk.topic_title", ticket=ticket, priority=priority, reason=reason_label(reason)
    )


def _direction(values: list[float], step: float) -> str | None:
    """'rising', 'easing' or 'steady' from the latest three values against the earlier ones."""
    if len(values) < 2:
        return None
    recent = values[-3:] if len(values) > 3 else values[len(values) // 2 :]
    earlier = values[: len(values) - len(recent)] or values[:1]
    change = mean(recent) - mean(earlier)
    if change >= step:
        return "up"
    if change <= -step:
        return "down"
    return "steady"


def trend_words(rows: list[CheckIn]) -> str:
    """Recent check-ins in words: cravings and mood going up, down or steady; lapses."""
    if not rows:
        return desk_text("desk.trend.none")
    parts: list[str] = []
    cravings = [float(r.craving_level) for r in rows if r.craving_level is not None]
    direction = _direction(cravings, CRAVING_STEP)
    if direction is not None:
        parts.append(
            desk_text(
                f"desk.trend.craving_{direction}",
                first=round(cravings[0]),
                last=round(cravings[-1]),
            )
        )
    elif cravings:
        parts.append(desk_text("desk.trend.craving_once", level=round(cravings[0])))
    moods = [float(r.mood) for r in rows if r.mood is not None]
    mood = _direction(moods, MOOD_STEP)
    if mood is not None:
        parts.append(desk_text(f"desk.trend.mood_{mood}"))
    lapses = sum(1 for r in rows if r.used or r.kind == "lapse")
    if lapses:
        parts.append(desk_plural("desk.trend.lapses", lapses, count=lapses))
    parts.append(desk_plural("desk.trend.count", len(rows), count=len(rows), days=TREND_DAYS))
    return "; ".join(parts)


def risk_flags(reason: str, rows: list[CheckIn], requests: int, now: datetime) -> tuple[str, ...]:
    """What a volunteer should know first: crisis reasons, a recent lapse, strong cravings."""
    flags: list[str] = []
    if reason.startswith("crisis_"):
        flags.append(desk_text(f"desk.flag.{reason}"))
    recent_lapse = now - timedelta(days=LAPSE_DAYS)
    if reason == "lapse" or any(
        (r.used or r.kind == "lapse") and aware(r.created_at) >= recent_lapse for r in rows
    ):
        flags.append(desk_text("desk.flag.recent_lapse"))
    strong_since = now - timedelta(hours=STRONG_CRAVING_HOURS)
    if reason == "high_craving" or any(
        (r.craving_level or 0) >= STRONG_CRAVING and aware(r.created_at) >= strong_since
        for r in rows
    ):
        flags.append(desk_text("desk.flag.strong_craving"))
    if requests >= 2:
        flags.append(desk_plural("desk.flag.repeat", requests, count=requests, days=REPEAT_DAYS))
    return tuple(flags)


async def build_card(
    session: AsyncSession, escalation: Escalation, user: User, now: datetime
) -> Card:
    """The card for one escalation, from the person's stored rows."""
    since = now - timedelta(days=TREND_DAYS)
    rows = list(
        await session.scalars(
            select(CheckIn)
            .where(CheckIn.user_id == user.id, CheckIn.created_at >= since)
            .order_by(CheckIn.created_at, CheckIn.id)
        )
    )
    requests = int(
        await session.scalar(
            select(func.count())
            .select_from(Escalation)
            .where(
                Escalation.user_id == user.id,
                Escalation.created_at >= now - timedelta(days=REPEAT_DAYS),
            )
        )
        or 0
    )
    return Card(
        ticket=escalation.id,
        priority=escalation.priority,
        reason=escalation.reason,
        person=friendly_name(user.id),
        language=user.language,
        country=user.country,
        trend=trend_words(rows),
        flags=risk_flags(escalation.reason, rows, requests, now),
        opened=aware(escalation.created_at),
    )


def card_text(card: Card) -> str:
    """The summary card as HTML (every value escaped; none of it identifies the person)."""
    flags = "; ".join(card.flags) if card.flags else desk_text("desk.flag.none")
    country = card.country or desk_text("desk.card.country_unknown")
    return desk_text(
        "desk.card",
        ticket=card.ticket,
        priority=card.priority,
        reason=reason_label(card.reason),
        person=card.person,
        language=card.language,
        country=country,
        trend=card.trend,
        flags=flags,
        opened=f"{card.opened:%H:%M}",
    )


def escape(value: str) -> str:
    """HTML-escape a value for a message sent with parse_mode HTML."""
    return html.escape(value, quote=False)
