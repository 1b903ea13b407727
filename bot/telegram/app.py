"""The python-telegram-bot Application: handlers, ordering, sending, polling."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from contextlib import suppress
from datetime import datetime
from typing import Any, Protocol

from telegram import BotCommand, CallbackQuery, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, BaseRateLimiter, ContextTypes, TypeHandler
from telegram.request import BaseRequest

from bot import metrics
from bot.config import Settings
from bot.desk.config import DeskSettings
from bot.desk.telegram import register_desk
from bot.inbox import Inbox
from bot.sender import (
    CAPTION_LIMIT,
    RecipientGone,
    SendError,
    SendRejected,
    TelegramSender,
    keyboard,
    make_rate_limiter,
    send_replies,
)
from bot.service import KindredService
from bot.telegram.aiohttp_request import AiohttpRequest
from bot.telegram.ordering import PerPersonUpdateProcessor
from bot.telegram.tolerant_bot import TolerantBot
from bot.telegram.updates import to_inbound

__all__ = [
    "CAPTION_LIMIT",
    "Background",
    "KindredApplication",
    "create_application",
    "install_signal_handlers",
    "keyboard",
    "make_update_handler",
    "run_polling",
    "send_replies",
]

log = logging.getLogger(__name__)

DESK_KEY = "kindred.desk"  # application.bot_data key of the volunteer desk, when there is one
COMMANDS = (
    ("start", "What Kindred is, and privacy"),
    ("help", "What I can do"),
    ("checkin", "Check in on how you're doing"),
    ("coping", "Coping skills for hard moments"),
    ("progress", "Your progress over 30 days"),
    ("checkup", "The weekly checkup"),
    ("language", "English · Español · Русский"),
    ("mydata", "Everything stored about you, as a file"),
    ("delete", "Erase everything stored about you"),
)


class KindredApplication(Application[Any, Any, Any, Any, Any, Any]):
    """PTB's Application that tells the inbox when an update's handling has finished."""

    inbox: Inbox | None = None

    async def process_update(self, update: object) -> None:
        """Handle the update; then (not when cancelled midway) it may leave the inbox."""
        await super().process_update(update)
        if self.inbox is not None and isinstance(update, Update):
            self.inbox.done(self.bot.id, update.update_id)

    async def replay_left_over(self, received_before: datetime | None = None) -> list[Update]:
        """What a stopped worker left unhandled in the inbox, parsed, oldest first."""
        if self.inbox is None or not isinstance(self.bot, TolerantBot):
            return []
        raw = await self.inbox.left_over(self.bot.id, received_before)
        return list(self.bot.updates_from(raw))


def make_update_handler(service: KindredService):  # type: ignore[no-untyped-def]
    """The one handler: every update goes through the service, replies come back here."""

    async def handle_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        inbound = to_inbound(update, context.bot.id)
        answering: asyncio.Task[None] | None = None
        if update.callback_query is not None:
            # Always answer a press, even a stale or forged one, so the button stops spinning;
            # meanwhile the press is handled (the answer is one more round trip otherwise).
            answering = asyncio.create_task(_answer(update.callback_query))
        if inbound is None or update.effective_chat is None:
            if answering is not None:
                await answering
            return
        try:
            handled = await service.handle(inbound)
        finally:
            if answering is not None:
                await answering
        try:
            # The sender retries what certainly did not arrive (429, 5xx, not sent) and never
            # resends what may have: a duplicate reply is worse than a late one.
            await TelegramSender(context.bot).send(update.effective_chat.id, handled.replies)
        except RecipientGone:
            log.info("person %s has blocked the bot", handled.pseudonym[:12])
        except SendRejected as exc:
            log.error("reply rejected by Telegram for %s: %s", handled.pseudonym[:12], exc)
        except SendError as exc:
            log.warning(
                "reply to %s not confirmed: %s (%d sent)",
                handled.pseudonym[:12],
                type(exc).__name__,
                exc.delivered,
            )

    return handle_update


async def _answer(query: CallbackQuery) -> None:
    with suppress(TelegramError):
        await query.answer()


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the fault's type only: tracebacks could carry message text."""
    error = context.error
    log.error("unhandled %s while handling an update", type(error).__name__)
    metrics.handler_failed(metrics.update_kind(update) if isinstance(update, Update) else "other")


async def set_commands(application: Application) -> None:
    """Commands menu; failing is not fatal (the bot works without it)."""
    try:
        await application.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
    except TelegramError as exc:
        log.warning("setMyCommands failed: %s", type(exc).__name__)


def freeze_startup_objects() -> None:
    """Keep what start-up built out of the cyclic garbage collector (call once it is built).

    The NLU model, the copy catalogue and the libraries' caches live as long as the process;
    every full collection would walk them all again, stalling the event loop for tens of
    milliseconds under load (the scheduler worker does the same).
    """
    gc.collect()
    gc.freeze()


def create_application(
    settings: Settings,
    service: KindredService,
    *,
    desk_settings: DeskSettings | None = None,
    request: BaseRequest | None = None,
    get_updates_request: BaseRequest | None = None,
    rate_limiter: BaseRateLimiter[Any] | None = None,
) -> Application:
    """The Application, pointed at TELEGRAM_API_BASE, with per-person ordering and rate limits.

    `request`, `get_updates_request` and `rate_limiter` replace the defaults (the pipeline
    benchmark instruments them).
    """
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    base = settings.telegram_api_base.rstrip("/")
    # aiohttp, not PTB's default httpx: httpx's pool degrades under many concurrent requests
    # (97 echo updates/s at best with 80 ms round trips, against 727/s; see LIBRARIES.md).
    if request is None:
        request = AiohttpRequest(
            connection_pool_size=settings.connection_pool_size,
            connect_timeout=10.0,
            read_timeout=10.0,
            write_timeout=10.0,
            pool_timeout=10.0,
        )
    if get_updates_request is None:
        # Two connections: PTB confirms the last offset on shutdown while the long poll unwinds.
        get_updates_request = AiohttpRequest(connection_pool_size=2, read_timeout=40.0)
    if rate_limiter is None:
        # One limiter for replies and follow-ups alike: Redis-backed when REDIS_URL is set.
        rate_limiter = make_rate_limiter(settings.redis_url)
    bot = TolerantBot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=request,
        get_updates_request=get_updates_request,
        rate_limiter=rate_limiter,
    )
    inbox = (
        Inbox(service.engine, service.identity.encrypt, service.identity.decrypt)
        if service.engine is not None
        else None
    )
    bot.keep_updates_in(inbox)
    application = (
        ApplicationBuilder()
        .application_class(KindredApplication)
        .bot(bot)
        .concurrent_updates(PerPersonUpdateProcessor(settings.max_concurrent_updates))
        .post_init(set_commands)
        .build()
    )
    assert isinstance(application, KindredApplication)
    application.inbox = inbox
    application.add_handler(TypeHandler(Update, make_update_handler(service)))
    if settings.volunteer_chat_id is not None:
        # The desk's handlers run before the person pipeline and keep desk traffic out of it.
        application.bot_data[DESK_KEY] = register_desk(
            application,
            settings,
            service=service,
            sessions=service.sessions,
            identity=service.identity,
            nlu=service.nlu,
            desk_settings=desk_settings,
        )
    application.add_error_handler(on_error)
    return application


class Background(Protocol):
    """Something that runs beside polling, e.g. the follow-up scheduler."""

    async def start(self) -> None:
        """Start (the bot is initialized by then)."""
        ...

    async def stop(self) -> None:
        """Stop (the bot is still usable meanwhile)."""
        ...


async def run_polling(
    application: Application,
    stop: asyncio.Event,
    poll_timeout: int = 30,
    background: Background | None = None,
) -> None:
    """Long-poll until `stop` is set; PTB's own lifecycle, inside our event loop.

    `background` (the follow-up scheduler) starts once the bot is initialized and stops before
    it shuts down, so it can send for as long as it runs.
    """
    async with application:
        if application.post_init is not None:
            await application.post_init(application)
        freeze_startup_objects()
        await application.start()
        if isinstance(application, KindredApplication):
            # Before polling: what a crashed run left goes first, in the order it came.
            for update in await application.replay_left_over():
                await application.update_queue.put(update)
        assert application.updater is not None
        await application.updater.start_polling(
            timeout=poll_timeout, allowed_updates=Update.ALL_TYPES, drop_pending_updates=False
        )
        if background is not None:
            await background.start()
        try:
            await stop.wait()
        finally:
            if background is not None:
                await background.stop()
            await application.updater.stop()
            await application.stop()
            if isinstance(application, KindredApplication) and application.inbox is not None:
                await application.inbox.aclose()


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop polling gracefully (in-flight updates finish)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
