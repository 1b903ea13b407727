"""APScheduler as the clock: every process runs one, and the rows in `followups` are the jobs.

APScheduler 3 cannot share a job store between processes (its FAQ; agronholm/apscheduler #129,
#231), so it keeps only in-memory jobs here: a short interval job that delivers whatever is due
(claimed with FOR UPDATE SKIP LOCKED, so any number of processes cooperate) and cron jobs for
housekeeping. A restart loses nothing, because nothing lives in the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import housekeeping
from bot.db.engine import sessionmaker
from bot.followups import FollowUpDeliverer
from bot.identity import Identity
from bot.repository import utcnow
from bot.retention import DEFAULT_RETENTION_DAYS, erase_inactive
from bot.sender import Sender
from bot.wiring import Runtime

__all__ = [
    "FollowUpScheduler",
    "SchedulerSettings",
    "build_followup_scheduler",
    "start_scheduler",
    "stop_scheduler",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerSettings:
    """How often the scheduler looks for due rows, and whether it runs housekeeping."""

    interval: timedelta = timedelta(seconds=2)
    housekeeping: bool = True
    lease: timedelta = timedelta(seconds=30)
    retention_days: int = DEFAULT_RETENTION_DAYS


class FollowUpScheduler:
    """An AsyncIOScheduler that delivers due follow-ups and keeps the tables tidy."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        deliverer: FollowUpDeliverer,
        settings: SchedulerSettings = SchedulerSettings(),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Nothing runs until start()."""
        self._sessions = sessions
        self._deliverer = deliverer
        self._settings = settings
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._pump: asyncio.Task[int] | None = None

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        """The APScheduler instance while running."""
        return self._scheduler

    async def start(self) -> None:
        """Start the clock in the running event loop (MemoryJobStore only: rows are the jobs)."""
        scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
            event_loop=asyncio.get_running_loop(),
        )
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self._settings.interval.total_seconds()),
            id="deliver-followups",
            next_run_time=datetime.now(scheduler.timezone),
        )
        if self._settings.housekeeping:
            self._add_housekeeping(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        log.info("follow-up scheduler started")

    def _add_housekeeping(self, scheduler: AsyncIOScheduler) -> None:
        sessions, clock, lease = self._sessions, self._clock, self._settings.lease

        async def purge() -> None:
            await housekeeping.purge_processed_updates(sessions, clock())
            await housekeeping.purge_stale_inbox(sessions, clock())
            await housekeeping.purge_old_followups(sessions, clock())

        async def tidy() -> None:
            await housekeeping.cancel_followups_of_inactive(sessions)
            await housekeeping.sweep_stale_sends(sessions, clock(), lease)

        async def plan() -> None:
            await housekeeping.plan_proactive_followups(sessions, clock())

        scheduler.add_job(purge, CronTrigger(hour="*", minute=7), id="purge")
        scheduler.add_job(tidy, CronTrigger(minute="*"), id="tidy")
        scheduler.add_job(plan, CronTrigger(minute="*/15"), id="plan-followups")
        retention_days = self._settings.retention_days

        async def retention() -> None:
            await erase_inactive(sessions, retention_days, now=clock())

        # Nightly: people silent for longer than the retention period are erased.
        scheduler.add_job(retention, CronTrigger(hour=3, minute=41), id="retention")

    async def tick(self) -> None:
        """The interval job: start a delivery run unless one is still going.

        A run can take minutes (10,000 messages at 30 a second); returning at once keeps the
        interval job itself short, so APScheduler never logs skipped runs meanwhile.
        """
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run())

    async def _run(self) -> int:
        try:
            return await self._deliverer.run_once()
        except Exception as exc:  # the next tick tries again; the rows are still there
            log.exception("delivery run failed: %s", type(exc).__name__)
            return 0

    async def run_pending_now(self) -> int:
        """Deliver what is due now and wait for it (tests, benchmarks)."""
        if self._pump is not None and not self._pump.done():
            await self._pump
        return await self._run()

    async def stop(self) -> None:
        """Stop the clock, let the current run finish its messages and give back the rest."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self._deliverer.stop()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        log.info("follow-up scheduler stopped")


async def start_scheduler(
    sessions: async_sessionmaker[AsyncSession],
    deliverer: FollowUpDeliverer,
    settings: SchedulerSettings = SchedulerSettings(),
) -> FollowUpScheduler:
    """Build and start the scheduler (from `kindred run` or a scheduler-only process)."""
    scheduler = FollowUpScheduler(sessions, deliverer, settings)
    await scheduler.start()
    return scheduler


async def stop_scheduler(scheduler: FollowUpScheduler) -> None:
    """Stop a scheduler started with start_scheduler."""
    await scheduler.stop()


def build_followup_scheduler(
    runtime: Runtime,
    sender: Sender,
    settings: SchedulerSettings = SchedulerSettings(),
    identity: Identity | None = None,
) -> FollowUpScheduler:
    """The scheduler for a runtime, sending through `sender` (not started).

    `identity` must decrypt what the service encrypted: the runtime's, when it has one.
    """
    sessions = sessionmaker(runtime.engine)
    identity = identity or getattr(runtime, "identity", None)
    if identity is None:
        identity = Identity(runtime.settings.resolved_secret())
    deliverer = FollowUpDeliverer(sessions, runtime.service, identity, sender, lease=settings.lease)
    return FollowUpScheduler(sessions, deliverer, settings)
