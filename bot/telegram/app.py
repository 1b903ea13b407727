"""The python-telegram-bot Application: handlers, ordering, sending, polling."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest

from bot.config import Settings
from bot.rendering import split_for_telegram
from bot.service import KindredService
from bot.telegram.ordering import PerPersonUpdateProcessor
from bot.telegram.updates import to_inbound
from flows.engine import Reply

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
COMMANDS = (
    ("start", "What Kindred is, and privacy"),
    ("help", "What I can do"),
    ("checkin", "Check in on how you're doing"),
    ("coping", "Coping skills for hard moments"),
    ("progress", "Your progress over 30 days"),
)


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Inline buttons for a reply (callback data is the flow's payload)."""
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
            for row in reply.buttons
        ]
    )


async def send_replies(bot: object, chat_id: int, replies: tuple[Reply, ...]) -> None:
    """Send replies in order; long ones split, buttons on the last part."""
    from telegram import Bot

    assert isinstance(bot, Bot)
    for reply in replies:
        if reply.document is not None:
            name, content = reply.document
            await bot.send_document(
                chat_id,
                content,
                filename=name,
                caption=reply.text[:CAPTION_LIMIT],
                parse_mode=ParseMode.HTML,
            )
            continue
        if reply.image is not None:
            # A caption holds at most 1024 characters; a longer text follows the photo instead.
            caption = reply.text if len(reply.text) <= CAPTION_LIMIT else None
            await bot.send_photo(
                chat_id,
                reply.image,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(reply) if caption is not None else None,
            )
            if caption is not None:
                continue
        parts = split_for_telegram(reply.text)
        for index, part in enumerate(parts):
            markup = keyboard(reply) if index == len(parts) - 1 else None
            await bot.send_message(chat_id, part, parse_mode=ParseMode.HTML, reply_markup=markup)


def make_update_handler(service: KindredService):  # type: ignore[no-untyped-def]
    """The one handler: every update goes through the service, replies come back here."""

    async def handle_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        inbound = to_inbound(update, context.bot.id)
        if update.callback_query is not None:
            # Always answer a press, even a stale or forged one, so the button stops spinning.
            with suppress(TelegramError):
                await update.callback_query.answer()
        if inbound is None or update.effective_chat is None:
            return
        handled = await service.handle(inbound)
        try:
            await send_replies(context.bot, update.effective_chat.id, handled.replies)
        except Forbidden:
            log.info("person %s has blocked the bot", handled.pseudonym[:12])
        except BadRequest as exc:
            log.error("reply rejected by Telegram for %s: %s", handled.pseudonym[:12], exc.message)

    return handle_update


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the fault's type only: tracebacks could carry message text."""
    error = context.error
    log.error("unhandled %s while handling an update", type(error).__name__)


async def set_commands(application: Application) -> None:
    """Commands menu; failing is not fatal (the bot works without it)."""
    try:
        await application.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
    except TelegramError as exc:
        log.warning("setMyCommands failed: %s", type(exc).__name__)


def create_application(settings: Settings, service: KindredService) -> Application:
    """The Application, pointed at TELEGRAM_API_BASE, with per-person ordering and rate limits."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    base = settings.telegram_api_base.rstrip("/")
    # PTB's default pool of 1 connection starves concurrent updates; size it for them.
    request = HTTPXRequest(
        connection_pool_size=settings.connection_pool_size,
        connect_timeout=10.0,
        read_timeout=10.0,
        write_timeout=10.0,
        pool_timeout=10.0,
    )
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .request(request)
        # Two connections: PTB confirms the last offset on shutdown while the long poll unwinds.
        .get_updates_request(HTTPXRequest(connection_pool_size=2, read_timeout=40.0))
        .concurrent_updates(PerPersonUpdateProcessor(settings.max_concurrent_updates))
        .rate_limiter(AIORateLimiter(max_retries=3))
        .post_init(set_commands)
        .build()
    )
    application.add_handler(TypeHandler(Update, make_update_handler(service)))
    application.add_error_handler(on_error)
    return application


async def run_polling(
    application: Application,
    stop: asyncio.Event,
    poll_timeout: int = 30,
) -> None:
    """Long-poll until `stop` is set; PTB's own lifecycle, inside our event loop."""
    async with application:
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(
            timeout=poll_timeout, allowed_updates=Update.ALL_TYPES, drop_pending_updates=False
        )
        try:
            await stop.wait()
        finally:
            await application.updater.stop()
            await application.stop()


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM stop polling gracefully (in-flight updates finish)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
