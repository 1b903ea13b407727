"""Telegram updates as channel-agnostic Inbound events (or None: deliberately ignored)."""

from __future__ import annotations

import re
from dataclasses import replace

from telegram import Chat, Message, Update
from telegram.constants import MessageEntityType

from bot.inbound import Inbound
from flows.engine import EventKind

CHANNEL = "telegram"
MEDIA_KINDS = (
    "sticker",
    "photo",
    "voice",
    "video",
    "video_note",
    "audio",
    "animation",
    "document",
    "location",
    "contact",
    "poll",
    "dice",
    "venue",
)


def person_key(update: Update) -> int | None:
    """Whose update this is, for per-person ordering (None: no person, no ordering needed)."""
    if update.effective_user is not None:
        return update.effective_user.id
    if update.effective_chat is not None:
        return update.effective_chat.id
    return None


def to_inbound(update: Update, bot_id: int) -> Inbound | None:
    """A private message or button press as an Inbound; everything else is ignored."""
    user = update.effective_user
    chat = update.effective_chat
    if user is None or chat is None or chat.type != Chat.PRIVATE or user.is_bot:
        return None
    base = Inbound(
        channel=CHANNEL,
        external_user=str(user.id),
        chat_id=str(chat.id),
        kind=EventKind.TEXT,
        language_code=user.language_code,
        update_id=update.update_id,
        bot_id=bot_id,
    )
    if update.callback_query is not None:
        return replace(base, kind=EventKind.BUTTON, payload=update.callback_query.data or "")
    message = update.message
    if message is None:
        # Edited messages, reactions and the like: the original was already answered.
        return None
    return _message_inbound(message, base)


def _message_inbound(message: Message, base: Inbound) -> Inbound | None:
    if message.text is not None:
        command = _command(message)
        if command is not None:
            name, args = command
            return replace(base, kind=EventKind.COMMAND, command=name, args=args, text=message.text)
        return replace(base, text=message.text)
    for kind in MEDIA_KINDS:
        if getattr(message, kind, None):
            return replace(base, kind=EventKind.UNSUPPORTED, media=kind)
    return None


_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@\w+)?(?=\s|$)")


def _command(message: Message) -> tuple[str, str] | None:
    """('start', 'args') when the message starts with a bot command."""
    text = message.text or ""
    entities = message.entities or ()
    if entities and entities[0].type == MessageEntityType.BOT_COMMAND and not entities[0].offset:
        token = text[1 : entities[0].length]
        return token.split("@", 1)[0].lower(), text[entities[0].length :].strip()
    # Some clients and API servers omit the entity; the text itself still says it is a command.
    match = _COMMAND.match(text)
    if match is None:
        return None
    return match.group(1).lower(), text[match.end() :].strip()
