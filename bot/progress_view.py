"""What the bot sends for ShowProgress: the person's last 30 days as a chart and a summary."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.charts import progress_chart
from bot.db.models import CheckIn
from flows.engine import Reply
from flows.progress import ProgressPoint, in_window, summarize, window_start

# More than anyone checks in over 30 days; a cap so a flood of rows can't make the chart slow.
MAX_ROWS = 2000


def zone(name: str | None) -> tzinfo:
    """The person's time zone, UTC when unset or unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a folder
        return UTC


def local_today(timezone: str | None = None, now: datetime | None = None) -> date:
    """Today's date where the person lives (UTC when their time zone is not known)."""
    return (now or datetime.now(UTC)).astimezone(zone(timezone)).date()


def _local_day(created_at: datetime, tz: tzinfo) -> date:
    """The person's local day for a stored time; SQLite hands back naive UTC."""
    aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return aware.astimezone(tz).date()


async def load_points(
    session: AsyncSession, user_id: str, today: date, timezone: str | None = None
) -> list[ProgressPoint]:
    """The person's check-ins of the 30 days ending today, oldest first (only needed columns)."""
    tz = zone(timezone)
    since = datetime.combine(window_start(today), time.min, tzinfo=tz).astimezone(UTC)
    # Columns, not rows: the encrypted note and the substance are never read for a chart.
    rows = await session.execute(
        select(
            CheckIn.created_at, CheckIn.craving_level, CheckIn.mood, CheckIn.kind, CheckIn.outcome
        )
        .where(CheckIn.user_id == user_id, CheckIn.created_at >= since)
        .order_by(CheckIn.created_at.desc(), CheckIn.id.desc())  # the newest, if capped
        .limit(MAX_ROWS)
    )
    return in_window(_points(reversed(rows.all()), tz), today)


def _points(
    rows: Iterable[tuple[datetime, int | None, int | None, str, str | None]], tz: tzinfo
) -> list[ProgressPoint]:
    return [
        ProgressPoint(_local_day(created_at, tz), craving, mood, kind, outcome)
        for created_at, craving, mood, kind, outcome in rows
    ]


async def progress_replies(
    session: AsyncSession,
    user_id: str,
    lang: str,
    recovery_start: date | None,
    today: date,
    timezone: str | None = None,
) -> tuple[Reply, ...]:
    """One reply: the summary, with the chart as a photo when there is anything to draw."""
    points = await load_points(session, user_id, today, timezone)
    summary = summarize(lang, points, today, recovery_start)
    if not points:
        return (Reply(summary),)
    # Drawing takes tens of milliseconds of CPU: off the event loop, so nobody else waits on it.
    image = await asyncio.to_thread(progress_chart, points, today, recovery_start, lang)
    return (Reply(summary, image=image),)
