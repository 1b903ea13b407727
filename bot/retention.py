"""Retention: people who have not written for a long time are erased, as if they asked.

Kindred keeps what it needs to support someone who is still talking to it, and nothing after.
"Inactive" means no message or button press from the person (`users.last_seen_at`); messages
Kindred sent them do not count, so someone who only receives reminders for a year is erased
too. Default: 365 days (KINDRED_RETENTION_DAYS). The scheduler's housekeeping runs
`erase_inactive` daily, and `kindred retention run` runs it by hand. (Handled update ids are
pruned by bot.housekeeping.purge_processed_updates.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import User
from bot.privacy import erase_person

__all__ = ["DEFAULT_RETENTION_DAYS", "RetentionReport", "erase_inactive"]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365
BATCH_SIZE = 100


@dataclass
class RetentionReport:
    """How many people were erased, and the rows removed per table."""

    people: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        """Add one erasure's per-table counts."""
        self.people += 1
        for table, count in counts.items():
            self.rows[table] = self.rows.get(table, 0) + count


async def erase_inactive(
    sessions: async_sessionmaker[AsyncSession],
    days: int = DEFAULT_RETENTION_DAYS,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> RetentionReport:
    """Erase everyone whose last message is older than `days`; one transaction per batch."""
    if days < 1:
        raise ValueError("retention must be at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    report = RetentionReport()
    while True:
        async with sessions.begin() as session:
            # SKIP LOCKED: a person writing right now holds their row; they are not inactive,
            # and the bot must not wait on us. (SQLite has no row locks and ignores this.)
            ids = list(
                await session.scalars(
                    select(User.id)
                    .where(User.last_seen_at < cutoff)
                    .order_by(User.last_seen_at)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            )
            for user_id in ids:
                report.add(await erase_person(session, user_id))
        if len(ids) < batch_size:
            break
    if report.people:
        log.info("retention: erased %d people inactive for %d days", report.people, days)
    return report
