"""A process that only delivers follow-ups: `python -m bot.scheduler_worker`.

Runs beside the webhook workers, or as the second of two processes in the tests that kill one
and watch the other take over. Stops on SIGINT/SIGTERM, giving back the rows it had not begun.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from contextlib import suppress
from datetime import timedelta

from bot.config import Settings
from bot.scheduler import SchedulerSettings, build_followup_scheduler
from bot.sender import TelegramSender, build_bot, make_rate_limiter
from bot.wiring import build_runtime


async def run_scheduler_only(
    settings: Settings, scheduler_settings: SchedulerSettings, stop: asyncio.Event
) -> None:
    """Deliver follow-ups until `stop` is set."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    runtime = await build_runtime(settings)
    bot = build_bot(
        settings.telegram_bot_token.get_secret_value(),
        settings.telegram_api_base,
        make_rate_limiter(settings.redis_url),
        own_thread=True,  # writes and their timing away from the database work on this loop
    )
    try:
        async with bot:
            scheduler = build_followup_scheduler(runtime, TelegramSender(bot), scheduler_settings)
            await scheduler.start()
            # What start-up built (models, copy, caches) lives as long as the process: keep it
            # out of the cyclic collector, whose full passes over it would stall sending.
            gc.collect()
            gc.freeze()
            print("scheduler ready", flush=True)  # the process tests wait for this line
            try:
                await stop.wait()
            finally:
                await scheduler.stop()
    finally:
        await runtime.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--interval and --lease in seconds; --no-housekeeping for a delivery-only process."""
    parser = argparse.ArgumentParser(description="Kindred follow-up delivery process")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds before a takeover")
    parser.add_argument("--no-housekeeping", action="store_true")
    return parser.parse_args(argv)


def scheduler_settings(args: argparse.Namespace) -> SchedulerSettings:
    """The SchedulerSettings the arguments ask for."""
    return SchedulerSettings(
        interval=timedelta(seconds=args.interval),
        housekeeping=not args.no_housekeeping,
        lease=timedelta(seconds=args.lease),
    )


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_scheduler_only(Settings(), scheduler_settings(args), stop)


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    main()
