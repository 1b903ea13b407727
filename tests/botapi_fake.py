"""A local fake of the Telegram Bot API so the real bot can be tested over real HTTP.

Usage in tests::

    async with FakeBotAPI(token="123:TEST") as api:
        bot = telegram.Bot("123:TEST", base_url=f"{api.base_url}/bot",
                           base_file_url=f"{api.base_url}/file/bot")
        api.inject_message(42, "/start")
        ...

Standalone (for benchmarks)::

    python -m tests.botapi_fake --port 8081 --token 123:TEST --latency-ms 80

The standalone server also exposes a small control API under ``/_fake/`` (see
``FakeBotAPI._control_routes``) so another process can inject updates and read what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import json
import math
import re
import secrets
import signal
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = [
    "ApiError",
    "CallRecord",
    "FakeBotAPI",
    "SentItem",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
]

JSONDict = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
DEFAULT_TOPIC_COLOR = 0x6FB9F0
TOPIC_COLORS = frozenset({0x6FB9F0, 0xFFD67E, 0xCB86DB, 0x8EEE98, 0xFF93B2, 0xFB6F5F})
DEFAULT_USER_ID = 1000

# Methods that create a new message in a chat: these count for wait_for_sent and flood limits.
SEND_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendvoice",
        "sendaudio",
        "sendvideo",
        "sendanimation",
        "sendsticker",
        "copymessage",
        "forwardmessage",
    }
)

# Update types Telegram delivers when allowed_updates is empty (everything but these three).
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
_MESSAGE_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_message",
        "edited_business_message",
    }
)

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# Keys of a Message that describe its content (copied by copyMessage / forwardMessage).
_CONTENT_KEYS = (
    "text",
    "entities",
    "caption",
    "caption_entities",
    "photo",
    "document",
    "voice",
    "audio",
    "video",
    "animation",
    "sticker",
    "video_note",
    "location",
    "contact",
    "dice",
)

_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

# PTB sends form data where every non-string value is JSON-encoded (ints become "5", bools
# "true", objects a JSON string), so the fake has to know each parameter's type to decode it.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "menu_button",
        "link_preview_options",
        "reply_parameters",
        "media",
        "message_ids",
        "permissions",
        "results",
        "options",
        "explanation_entities",
        "rights",
        "reaction",
        "suggested_post_parameters",
    }
)
_INT_PARAMS = frozenset(
    {
        "offset",
        "limit",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "icon_color",
        "cache_time",
        "duration",
        "width",
        "height",
        "max_connections",
        "user_id",
        "until_date",
        "video_start_timestamp",
        "direct_messages_topic_id",
    }
)
_FLOAT_PARAMS = frozenset({"timeout"})
_BOOL_PARAMS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "drop_pending_updates",
        "show_alert",
        "disable_web_page_preview",
        "disable_content_type_detection",
        "has_spoiler",
        "show_caption_above_media",
        "allow_paid_broadcast",
        "revoke_messages",
        "only_if_banned",
        "remove_caption",
        "is_personal",
        "for_channels",
    }
)
_CHAT_ID_PARAMS = frozenset({"chat_id", "from_chat_id", "sender_chat_id"})
_INT_RE = re.compile(r"-?\d+")
_COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_BOT_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status plus Telegram's description."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        """Remember the status, the description and the optional retry_after."""
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JSONDict:
        """Return the JSON body Telegram would send for this error."""
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class _ClientGone(Exception):
    """The client of a long poll disconnected; nobody will read the answer."""


def _bad_request(description: str) -> ApiError:
    """Build a 400 error with Telegram's "Bad Request: " prefix."""
    return ApiError(400, f"Bad Request: {description}")


def _too_many_requests(retry_after: int) -> ApiError:
    """Build a 429 error exactly like Telegram's flood control answer."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


class _MappingAccess:
    """Lets records also be read like dicts (``record["method"]``, ``record.get("text")``)."""

    def __getitem__(self, key: str) -> Any:
        """Attribute access by name."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """Attribute access by name with a default."""
        return getattr(self, key, default)


@dataclass
class CallRecord(_MappingAccess):
    """One HTTP call the bot made to the fake (successful or not)."""

    method: str
    params: JSONDict
    status: int
    time: float
    token: str
    description: str | None = None
    duration: float = 0.0
    result: Any = None


@dataclass
class SentItem(_MappingAccess):
    """Something the bot did to a chat: a sent, copied, forwarded, edited or deleted message.

    ``text`` is what the user sees (tags stripped, entities decoded; the caption for media);
    ``raw_text`` is the text/caption parameter exactly as the bot sent it.
    """

    method: str
    chat_id: int
    message_id: int | None
    text: str | None
    parse_mode: str | None
    reply_markup: JSONDict | None
    message_thread_id: int | None
    params: JSONDict
    raw_text: str | None = None
    message: JSONDict | None = None
    token: str = ""
    time: float = 0.0


@dataclass
class _Upload:
    """A file part of a multipart request."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class _StoredFile:
    """A file the fake knows (uploaded by the bot, injected with an update or added by a test)."""

    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes | None = None

    @property
    def size(self) -> int:
        """Size in bytes; placeholder files report the size of their placeholder body."""
        return len(self.body())

    def body(self) -> bytes:
        """Bytes served for a download."""
        if self.content is not None:
            return self.content
        return f"fake file {self.file_id}".encode()


@dataclass
class _QueuedUpdate:
    """An update waiting in a bot's getUpdates queue."""

    update: JSONDict
    forced: bool = False  # inject_raw: deliver once even if its id is below the current offset
    delivered: bool = False

    @property
    def update_id(self) -> int:
        """The update_id, 0 when a raw update has none."""
        return int(self.update.get("update_id", 0))


@dataclass
class _Poll:
    """A pending getUpdates call, so a newer concurrent call can terminate it with 409."""

    request: web.Request
    conflicted: bool = False


@dataclass
class _Topic:
    """A forum topic."""

    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False


@dataclass
class _Fault:
    """A queued failure from fail_next."""

    status: int
    remaining: int
    retry_after: int
    description: str | None


@dataclass
class _BotState:
    """Everything that belongs to one bot token."""

    token: str
    user: JSONDict
    queue: list[_QueuedUpdate] = field(default_factory=list)
    next_update_id: int = 1
    allowed_updates: list[str] = field(default_factory=list)
    webhook_url: str = ""
    commands: dict[str, list[JSONDict]] = field(default_factory=dict)
    menu_buttons: dict[int | None, JSONDict] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    left_chats: set[int] = field(default_factory=set)
    kicked_chats: set[int] = field(default_factory=set)
    callbacks: dict[str, JSONDict] = field(default_factory=dict)
    flood_all: deque[float] = field(default_factory=deque)
    flood_chat: dict[int, deque[float]] = field(default_factory=dict)
    poll: _Poll | None = None


# ---------------------------------------------------------------------------------------------
# Text formatting: Telegram's HTML / MarkdownV2 / Markdown parsers, returning plain text and
# entities with UTF-16 offsets (that is what Telegram and PTB use).
# ---------------------------------------------------------------------------------------------


def _utf16_len(text: str) -> int:
    """Length of a string in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of a character index, as Telegram reports it in parse errors."""
    return len(text[:index].encode())


def _parse_error(message: str) -> ApiError:
    """Build the "can't parse entities" error."""
    return _bad_request(f"can't parse entities: {message}")


class _TextBuilder:
    """Accumulates parsed text while tracking its UTF-16 length."""

    __slots__ = ("parts", "utf16")

    def __init__(self) -> None:
        """Start empty."""
        self.parts: list[str] = []
        self.utf16 = 0

    def add(self, chunk: str) -> None:
        """Append a chunk of visible text."""
        self.parts.append(chunk)
        self.utf16 += _utf16_len(chunk)

    def text(self) -> str:
        """Return the text built so far."""
        return "".join(self.parts)


@dataclass
class _OpenEntity:
    """An entity whose end has not been seen yet."""

    kind: str
    start: int  # UTF-16 offset into the output
    byte_offset: int  # where it started in the input, for error messages
    attrs: dict[str, str] = field(default_factory=dict)


def _finish_entity(entity: _OpenEntity, end: int, entities: list[JSONDict]) -> None:
    """Turn a closed entity into a Telegram MessageEntity dict (empty ones are dropped)."""
    length = end - entity.start
    if length <= 0:
        return
    result: JSONDict = {"type": entity.kind, "offset": entity.start, "length": length}
    if entity.kind == "text_link":
        if not entity.attrs.get("url"):
            return
        result["url"] = entity.attrs["url"]
    elif entity.kind == "pre" and entity.attrs.get("language"):
        result["language"] = entity.attrs["language"]
    elif entity.kind == "custom_emoji":
        result["custom_emoji_id"] = entity.attrs["custom_emoji_id"]
    entities.append(result)


def _sorted_entities(entities: list[JSONDict]) -> list[JSONDict]:
    """Order entities like Telegram: by offset, longer (outer) ones first."""
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY_RE = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|([A-Za-z][A-Za-z0-9]*));")
_HTML_SPECIAL_RE = re.compile(r"[<&]")
_HTML_TAG_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_HTML_ATTR_NAME_RE = re.compile(r"[A-Za-z0-9_:-]+")
_HTML_UNQUOTED_VALUE_RE = re.compile(r"[^\s>]+")
_HTML_END_TAG_RE = re.compile(r"</([A-Za-z0-9-]*)\s*>")
_WS_RE = re.compile(r"\s*")


def _decode_html_entity(match: re.Match[str]) -> str | None:
    """Decode one HTML entity the way Telegram does, or None if Telegram does not know it."""
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        return _HTML_NAMED_ENTITIES.get(name)
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _decode_html_attribute(raw: str) -> str:
    """Decode entities inside an attribute value (leniently: unknown ones stay as they are)."""

    def replace(match: re.Match[str]) -> str:
        decoded = _decode_html_entity(match)
        return match.group(0) if decoded is None else decoded

    return _HTML_ENTITY_RE.sub(replace, raw)


def parse_html(text: str, *, strict_entities: bool = True) -> tuple[str, list[JSONDict]]:
    """Parse Telegram HTML into (plain text, entities); raise ApiError like Telegram on errors.

    With ``strict_entities`` a bare ``&`` that does not start a supported entity is an error.
    Real Telegram keeps such a ``&`` literally; the fake is stricter on purpose, because an
    unescaped ``&`` almost always means user text was not passed through html.escape.
    """
    out = _TextBuilder()
    entities: list[JSONDict] = []
    stack: list[_OpenEntity] = []
    tag_names: list[str] = []
    i, n = 0, len(text)
    while i < n:
        special = _HTML_SPECIAL_RE.search(text, i)
        if special is None:
            out.add(text[i:])
            break
        if special.start() > i:
            out.add(text[i : special.start()])
            i = special.start()
        if text[i] == "&":
            match = _HTML_ENTITY_RE.match(text, i)
            decoded = _decode_html_entity(match) if match else None
            if decoded is not None and match is not None:
                out.add(decoded)
                i = match.end()
                continue
            if strict_entities:
                snippet = text[i : i + 10].split(" ")[0]
                raise _parse_error(
                    f'Unsupported HTML entity "{snippet}" at byte offset {_byte_offset(text, i)}'
                )
            out.add("&")
            i += 1
            continue
        if text.startswith("</", i):
            end_match = _HTML_END_TAG_RE.match(text, i)
            if end_match is None:
                raise _parse_error(f"Unclosed end tag at byte offset {_byte_offset(text, i)}")
            name = end_match.group(1).lower()
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {_byte_offset(text, i)}")
            if name != tag_names[-1]:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {_byte_offset(text, i)}, "
                    f'expected "</{tag_names[-1]}>", found "</{name}>"'
                )
            entity = stack.pop()
            tag_names.pop()
            # <pre><code class="language-x">...</code></pre> is one pre entity with a language.
            if entity.kind == "code" and stack and stack[-1].kind == "pre":
                language = entity.attrs.get("language")
                if language:
                    stack[-1].attrs["language"] = language
            else:
                _finish_entity(entity, out.utf16, entities)
            i = end_match.end()
            continue
        i = _parse_html_start_tag(text, i, out, stack, tag_names)
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{tag_names[-1]}"')
    return out.text(), _sorted_entities(entities)


def _parse_html_start_tag(
    text: str, start: int, out: _TextBuilder, stack: list[_OpenEntity], tag_names: list[str]
) -> int:
    """Parse one start tag at ``start`` (a "<"), push its entity and return the next index."""
    n = len(text)
    offset = _byte_offset(text, start)
    name_match = _HTML_TAG_NAME_RE.match(text, start + 1)
    if name_match is None:
        raise _parse_error(f'Unsupported start tag "" at byte offset {offset}')
    name = name_match.group().lower()
    if name not in _HTML_TAGS:
        raise _parse_error(f'Unsupported start tag "{name}" at byte offset {offset}')
    attrs: dict[str, str] = {}
    j = name_match.end()
    while True:
        j = _WS_RE.match(text, j).end()  # type: ignore[union-attr]  # \s* always matches
        if j >= n:
            raise _parse_error(f"Unclosed start tag at byte offset {offset}")
        if text[j] == ">":
            j += 1
            break
        attr_match = _HTML_ATTR_NAME_RE.match(text, j)
        if attr_match is None:
            raise _parse_error(
                f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(text, j)}'
            )
        attr_name = attr_match.group().lower()
        j = _WS_RE.match(text, attr_match.end()).end()  # type: ignore[union-attr]
        value = ""
        if j < n and text[j] == "=":
            j = _WS_RE.match(text, j + 1).end()  # type: ignore[union-attr]
            if j >= n:
                raise _parse_error(f"Unclosed start tag at byte offset {offset}")
            if text[j] in "\"'":
                close = text.find(text[j], j + 1)
                if close < 0:
                    raise _parse_error(f"Unclosed start tag at byte offset {offset}")
                value = _decode_html_attribute(text[j + 1 : close])
                j = close + 1
            else:
                value_match = _HTML_UNQUOTED_VALUE_RE.match(text, j)
                if value_match is None:
                    raise _parse_error(f"Unclosed start tag at byte offset {offset}")
                value = _decode_html_attribute(value_match.group())
                j = value_match.end()
        attrs[attr_name] = value
    kind = _HTML_TAGS[name]
    entity_attrs: dict[str, str] = {}
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
    if kind == "text_link":
        entity_attrs["url"] = attrs.get("href", "")
    elif kind == "code" and attrs.get("class", "").startswith("language-"):
        entity_attrs["language"] = attrs["class"].removeprefix("language-")
    elif kind == "custom_emoji":
        emoji_id = attrs.get("emoji-id", "")
        if not emoji_id.isdigit():
            raise _parse_error(
                f'Tag "tg-emoji" must have a valid attribute "emoji-id" at byte offset {offset}'
            )
        entity_attrs["custom_emoji_id"] = emoji_id
    elif kind == "blockquote" and "expandable" in attrs:
        kind = "expandable_blockquote"
    stack.append(_OpenEntity(kind, out.utf16, offset, entity_attrs))
    tag_names.append(name)
    return j


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}
_MDV2_CLOSERS = {
    "bold": "*",
    "italic": "_",
    "underline": "__",
    "strikethrough": "~",
    "spoiler": "||",
    "text_link": "]",
    "custom_emoji": "]",
}


def _reserved_error(char: str) -> ApiError:
    """Telegram's error for an unescaped MarkdownV2 reserved character."""
    return _parse_error(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def _parse_mdv2_url(text: str, i: int) -> tuple[str | None, int]:
    """Parse "(url)" after a link's "]" and return (url or None, next index)."""
    n = len(text)
    if i >= n or text[i] != "(":
        return None, i
    chars: list[str] = []
    j = i + 1
    while j < n and text[j] != ")":
        if text[j] == "\\" and j + 1 < n:
            chars.append(text[j + 1])
            j += 2
            continue
        chars.append(text[j])
        j += 1
    if j >= n:
        raise _parse_error(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
    return "".join(chars), j + 1


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 into (plain text, entities), rejecting unescaped reserved characters."""
    out = _TextBuilder()
    entities: list[JSONDict] = []
    stack: list[_OpenEntity] = []
    in_expandable = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        top = stack[-1] if stack else None
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        if top is not None and top.kind in ("code", "pre"):
            # Inside code only "`" and "\" are special.
            if char != "`":
                out.add(char)
                i += 1
                continue
            if top.kind == "pre" and not text.startswith("```", i):
                raise _reserved_error(char)
            stack.pop()
            _finish_entity(top, out.utf16, entities)
            i += 3 if top.kind == "pre" else 1
            continue
        if char not in _MDV2_RESERVED:
            if char == "\n" and in_expandable and not text.startswith(">", i + 1):
                in_expandable = False
            out.add(char)
            i += 1
            continue
        closer = _MDV2_CLOSERS.get(top.kind) if top is not None else None
        # "__" inside italic opens underline, unless an underline is open below the italic:
        # then it is "_" closing the italic (the "___" ambiguity).
        if (
            top is not None
            and closer is not None
            and text.startswith(closer, i)
            and not (
                top.kind == "italic"
                and text.startswith("__", i)
                and not any(e.kind == "underline" for e in stack)
            )
        ):
            stack.pop()
            i += len(closer)
            if top.kind in ("text_link", "custom_emoji"):
                url, i = _parse_mdv2_url(text, i)
                if top.kind == "custom_emoji":
                    if not url or not url.startswith("tg://emoji?id="):
                        raise _parse_error("Custom emoji entity must contain a tg://emoji URL")
                    top.attrs["custom_emoji_id"] = url.removeprefix("tg://emoji?id=")
                else:
                    top.attrs["url"] = url or ""
            _finish_entity(top, out.utf16, entities)
            continue
        at_line_start = i == 0 or text[i - 1] == "\n"
        offset = _byte_offset(text, i)
        if char == ">" and at_line_start:
            i += 1  # block quote line marker
        elif char == "*" and at_line_start and text.startswith("**>", i):
            in_expandable = True
            i += 3
        elif (
            char == "|"
            and in_expandable
            and text.startswith("||", i)
            and (i + 2 == n or text[i + 2] == "\n")
            and not any(e.kind == "spoiler" for e in stack)
        ):
            in_expandable = False  # "||" at the end of an expandable block quote
            i += 2
        elif char == "_":
            kind = "underline" if text.startswith("__", i) else "italic"
            stack.append(_OpenEntity(kind, out.utf16, offset))
            i += 2 if kind == "underline" else 1
        elif char in "*~":
            stack.append(_OpenEntity("bold" if char == "*" else "strikethrough", out.utf16, offset))
            i += 1
        elif char == "|" and text.startswith("||", i):
            stack.append(_OpenEntity("spoiler", out.utf16, offset))
            i += 2
        elif char == "[":
            stack.append(_OpenEntity("text_link", out.utf16, offset))
            i += 1
        elif char == "!" and text.startswith("![", i):
            stack.append(_OpenEntity("custom_emoji", out.utf16, offset))
            i += 2
        elif char == "`":
            if text.startswith("```", i):
                i += 3
                entity = _OpenEntity("pre", out.utf16, offset)
                newline = text.find("\n", i)
                if newline >= 0 and re.fullmatch(r"[^\s`]*", text[i:newline]):
                    if text[i:newline]:
                        entity.attrs["language"] = text[i:newline]
                    i = newline + 1
                stack.append(entity)
            else:
                stack.append(_OpenEntity("code", out.utf16, offset))
                i += 1
        else:
            raise _reserved_error(char)
    if stack:
        top = stack[-1]
        raise _parse_error(
            f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset {top.byte_offset}"
        )
    return out.text(), _sorted_entities(entities)


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Parse legacy Markdown (no nesting) into (plain text, entities)."""
    out = _TextBuilder()
    entities: list[JSONDict] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        missing = _parse_error(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}"
        )
        start = out.utf16
        if char == "[":
            close = text.find("]", i + 1)
            if close < 0:
                raise missing
            out.add(text[i + 1 : close])
            i = close + 1
            if text.startswith("(", i):
                end = text.find(")", i)
                if end < 0:
                    raise missing
                url = text[i + 1 : end]
                i = end + 1
                if out.utf16 > start and url:
                    entities.append(
                        {
                            "type": "text_link",
                            "offset": start,
                            "length": out.utf16 - start,
                            "url": url,
                        }
                    )
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise missing
            body = text[i + 3 : end]
            language, newline, rest = body.partition("\n")
            entity: JSONDict = {"type": "pre"}
            if newline and language and " " not in language:
                entity["language"] = language
                body = rest
            out.add(body)
            i = end + 3
        else:
            end = text.find(char, i + 1)
            if end < 0:
                raise missing
            out.add(text[i + 1 : end])
            entity = {"type": {"_": "italic", "*": "bold", "`": "code"}[char]}
            i = end + 1
        if out.utf16 > start:
            entity.update(offset=start, length=out.utf16 - start)
            entities.append(entity)
    return out.text(), _sorted_entities(entities)


# ---------------------------------------------------------------------------------------------
# Request parameter normalisation.
# ---------------------------------------------------------------------------------------------


def _coerce_param(key: str, value: Any) -> Any:
    """Convert one form/JSON parameter to the type the Bot API expects for that key."""
    if not isinstance(value, str):
        return value
    if key in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            if key == "reply_markup":
                raise _bad_request("can't parse reply keyboard markup JSON object") from None
            raise _bad_request(f"can't parse {key} JSON object") from None
    if key in _CHAT_ID_PARAMS:
        return int(value) if _INT_RE.fullmatch(value.strip()) else value
    if key in _INT_PARAMS:
        if not _INT_RE.fullmatch(value.strip()):
            raise _bad_request(f"invalid {key} specified")
        return int(value)
    if key in _FLOAT_PARAMS:
        try:
            return float(value)
        except ValueError:
            raise _bad_request(f"invalid {key} specified") from None
    if key in _BOOL_PARAMS:
        return value.strip().lower() in ("true", "1")
    return value


def normalize_params(raw: Mapping[str, Any]) -> JSONDict:
    """Decode parameters that arrived as strings (form data) into ints/bools/objects."""
    return {key: _coerce_param(key, value) for key, value in raw.items()}


def _canonical_json(value: Any) -> str:
    """A stable JSON string used as a dictionary key."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# The fake server.
# ---------------------------------------------------------------------------------------------

_Handler = Callable[[_BotState, JSONDict, dict[str, _Upload]], Any]


class FakeBotAPI:
    """An aiohttp server that behaves like api.telegram.org for the methods Kindred uses."""

    def __init__(
        self,
        token: str = "123:TEST",
        *,
        username: str = "kindred_test_bot",
        latency_ms: float = 0,
        enforce_flood_limits: bool = False,
        flood_global_per_second: int = 30,
        flood_chat_per_second: int = 1,
        strict_html_entities: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the fake; nothing listens until start()."""
        self.latency_ms = latency_ms
        self.enforce_flood_limits = enforce_flood_limits
        self.flood_global_per_second = flood_global_per_second
        self.flood_chat_per_second = flood_chat_per_second
        self.strict_html_entities = strict_html_entities
        self.host = host
        self.port = port
        self.calls: list[CallRecord] = []
        self.errors: list[CallRecord] = []
        self.callback_answers: list[JSONDict] = []
        self.flood_429_count = 0
        self._sent: list[SentItem] = []
        self._bots: dict[str, _BotState] = {}
        self._default_token = token
        self._chats: dict[int, JSONDict] = {}
        self._users: dict[int, JSONDict] = {}
        self._messages: dict[int, dict[int, JSONDict]] = {}
        self._next_message_id: dict[int, int] = {}
        self._topics: dict[int, dict[int, _Topic]] = {}
        self._files: dict[str, _StoredFile] = {}
        self._file_paths: dict[str, _StoredFile] = {}
        self._file_counter = 0
        self._callback_counter = 0
        self._faults: dict[str, list[_Fault]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, tuple[str, _Handler]] = {}
        self._register_handlers()
        self.add_bot(token, username)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening on host:port (port 0 picks a free port)."""
        if self._runner is not None:
            return
        # Telegram accepts uploads up to 50 MB; aiohttp's default body limit is 1 MB.
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/_fake/{action}", self._handle_control)
        # handler_cancellation: a long poll whose client went away (PTB cancelled it) must stop
        # instead of lingering and later colliding with the next getUpdates as a 409.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self._closing = False
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Wake pending long polls and shut the server down."""
        if self._runner is None:
            return
        self._closing = True
        self._notify()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self.stop()

    @property
    def base_url(self) -> str:
        """Root URL of the server, e.g. http://127.0.0.1:PORT (the bot uses base_url + "/bot")."""
        if self._runner is None:
            raise RuntimeError("FakeBotAPI is not started")
        return f"http://{self.host}:{self.port}"

    # -- test-side setup -------------------------------------------------------------------------

    def add_bot(
        self, token: str, username: str | None = None, *, first_name: str = "Kindred Test"
    ) -> JSONDict:
        """Register a bot token and return its User object."""
        bot_id_text = token.split(":", 1)[0]
        # Telegram bot ids are the token's numeric prefix; crc32 keeps odd tokens deterministic.
        bot_id = int(bot_id_text) if bot_id_text.isdigit() else zlib.crc32(token.encode())
        user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username or f"bot{bot_id}_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._bots[token] = _BotState(token=token, user=user)
        return copy.deepcopy(user)

    def bot_user(self, token: str | None = None) -> JSONDict:
        """The User object getMe returns for a token."""
        return copy.deepcopy(self._bot(token).user)

    def add_chat(
        self,
        chat_id: int,
        chat_type: str = "private",
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str = "Test",
        is_forum: bool = False,
    ) -> JSONDict:
        """Register (or update) a chat the bot may talk to and return its Chat object."""
        chat: JSONDict = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
            self._users.setdefault(
                chat_id,
                {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": "en"},
            )
        else:
            chat["title"] = title or f"Test {chat_type}"
        if username:
            chat["username"] = username
        if is_forum:
            chat["is_forum"] = True
        self._chats[chat_id] = chat
        return copy.deepcopy(chat)

    def add_file(self, file_id: str, content: bytes, *, file_path: str | None = None) -> str:
        """Make a file_id known with the given content; returns its download path."""
        stored = _StoredFile(
            file_id, f"u{file_id}"[:32], file_path or f"files/{file_id}", content=content
        )
        self._files[file_id] = stored
        self._file_paths[stored.file_path] = stored
        return stored.file_path

    def block(self, user_id: int, token: str | None = None) -> None:
        """Simulate the user blocking the bot: sends to their private chat answer 403."""
        self._bot(token).blocked.add(user_id)

    def unblock(self, user_id: int, token: str | None = None) -> None:
        """Undo block()."""
        self._bot(token).blocked.discard(user_id)

    def kick(self, chat_id: int, token: str | None = None) -> None:
        """Simulate the bot being removed from a group: sends answer 403."""
        self._bot(token).kicked_chats.add(chat_id)

    def fail_next(
        self,
        method: str,
        status: int = 500,
        times: int = 1,
        retry_after: int = 1,
        *,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``status`` (429: retry_after)."""
        fault = _Fault(status, times, retry_after, description)
        self._faults.setdefault(method.lower(), []).append(fault)

    def clear_records(self) -> None:
        """Forget calls, errors and sent items (state such as chats and messages is kept)."""
        self.calls.clear()
        self.errors.clear()
        self._sent.clear()
        self.callback_answers.clear()
        self.flood_429_count = 0

    # -- injecting updates -----------------------------------------------------------------------

    def inject_message(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str = "en",
        first_name: str = "Test",
        username: str | None = None,
        message_thread_id: int | None = None,
        is_topic_message: bool = False,
        reply_to: int | None = None,
        token: str | None = None,
    ) -> JSONDict:
        """Queue a text message from a user and return the update."""
        bot = self._bot(token)
        user = self._remember_user(user_id, first_name, username, language_code)
        chat_id = user_id if chat_id is None else chat_id
        if chat_id < 0 and chat_type == "private":
            chat_type = "supergroup"  # negative ids are groups; spare callers the extra argument
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self.add_chat(
                chat_id,
                chat_type,
                first_name=first_name,
                username=username if chat_type == "private" else None,
            )
        if message_thread_id is not None and chat["type"] != "private":
            # A message in a topic only exists in forums; make the chat one and know the topic.
            chat["is_forum"] = True
            self._topics.setdefault(chat_id, {}).setdefault(
                message_thread_id, _Topic(f"Topic {message_thread_id}", DEFAULT_TOPIC_COLOR)
            )
        if chat["type"] == "private":
            bot.blocked.discard(user_id)  # writing to a bot unblocks it
        message: JSONDict = {
            "message_id": self._next_mid(chat_id),
            "from": user,
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            "text": text,
        }
        entities = [
            {
                "type": "bot_command",
                "offset": _utf16_len(text[: m.start()]),
                "length": _utf16_len(m.group()),
            }
            for m in _COMMAND_RE.finditer(text)
        ]
        if entities:
            message["entities"] = entities
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            if is_topic_message:
                message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = self._reply_copy(chat, reply_to)
        self._store_message(message)
        return self._enqueue(bot, {"message": message})

    def inject_callback(
        self,
        user_id: int,
        message_id: int,
        data: str,
        *,
        chat_id: int | None = None,
        token: str | None = None,
    ) -> JSONDict:
        """Queue a button press on message ``message_id`` and return the update."""
        bot = self._bot(token)
        chat_id = user_id if chat_id is None else chat_id
        chat = self._chats.get(chat_id) or self.add_chat(chat_id)
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            message = {"message_id": message_id, "date": int(time.time()), "chat": chat}
        user = self._users.get(user_id) or self._remember_user(user_id, "Test", None, "en")
        query: JSONDict = {
            "id": self._new_callback_id(),
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(message),
            "chat_instance": str(zlib.crc32(f"{chat_id}:{bot.token}".encode())),
            "data": data,
        }
        bot.callbacks[query["id"]] = query
        return self._enqueue(bot, {"callback_query": query})

    def inject_update(self, partial: JSONDict, *, token: str | None = None) -> JSONDict:
        """Queue any update, filling update_id and missing date/chat/from; return it."""
        bot = self._bot(token)
        update = copy.deepcopy(partial)
        update.pop("update_id", None)
        kind = next((key for key in update if key in UPDATE_TYPES), None)
        if kind is None:
            raise ValueError(f"update needs one of {UPDATE_TYPES}, got {sorted(update)}")
        body = update[kind]
        if kind in _MESSAGE_UPDATES:
            self._complete_message(body, channel=kind.endswith("channel_post"))
            if kind.startswith("edited"):
                body.setdefault("edit_date", int(time.time()))
            self._store_message(body)
        elif kind == "callback_query":
            body.setdefault("id", self._new_callback_id())
            body.setdefault("from", self._default_user())
            body.setdefault("chat_instance", "1")
            if isinstance(body.get("message"), dict):
                self._complete_message(body["message"], channel=False)
            bot.callbacks[body["id"]] = body
        elif kind in ("my_chat_member", "chat_member"):
            self._complete_member_update(bot, body, kind)
        self._register_files(update)
        return self._enqueue(bot, update)

    def inject_raw(self, update: JSONDict, *, token: str | None = None) -> JSONDict:
        """Queue an update exactly as given (e.g. a duplicate update_id); it is delivered once
        even if its id is already below the bot's offset."""
        bot = self._bot(token)
        queued = _QueuedUpdate(copy.deepcopy(update), forced=True)
        bot.next_update_id = max(bot.next_update_id, queued.update_id + 1)
        bot.queue.append(queued)
        self._touch()
        return copy.deepcopy(update)

    # -- inspecting what the bot did ---------------------------------------------------------------

    def sent(
        self, chat_id: int | None = None, method: str | None = None, *, include_edits: bool = False
    ) -> list[SentItem]:
        """New messages the bot sent/copied/forwarded (what wait_for_sent counts).

        Edits and deletions are recorded too: pass ``include_edits=True`` for everything, or
        name the method (e.g. ``method="editMessageText"``).
        """
        wanted = method.lower() if method else None
        return [
            item
            for item in self._sent
            if (chat_id is None or item.chat_id == chat_id)
            and (
                item.method.lower() == wanted
                if wanted
                else include_edits or item.method.lower() in SEND_METHODS
            )
        ]

    def last_text(self, chat_id: int) -> str | None:
        """The latest text the bot showed in a chat: sent or edited (None if there is none)."""
        for item in reversed(self._sent):
            if item.chat_id == chat_id and item.text is not None:
                return item.text
        return None

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """The current state of a stored message (after edits), or None if unknown/deleted."""
        stored = self._messages.get(chat_id, {}).get(message_id)
        return copy.deepcopy(stored) if stored is not None else None

    @staticmethod
    def buttons(item: SentItem | JSONDict | None) -> list[list[tuple[str, str | None]]]:
        """Inline keyboard of a SentItem/message/markup as rows of (label, callback_data)."""
        markup: Any = item.reply_markup if isinstance(item, SentItem) else item
        if isinstance(markup, dict) and "inline_keyboard" not in markup:
            markup = markup.get("reply_markup")
        if not isinstance(markup, dict):
            return []
        return [
            [(button.get("text", ""), button.get("callback_data")) for button in row]
            for row in markup.get("inline_keyboard", [])
        ]

    def topics(self, chat_id: int) -> dict[int, JSONDict]:
        """Forum topics of a chat as {message_thread_id: {name, icon_color, closed}}."""
        return {
            thread_id: asdict(topic) for thread_id, topic in self._topics.get(chat_id, {}).items()
        }

    def pending_updates(self, token: str | None = None) -> list[JSONDict]:
        """Updates still queued (not yet confirmed by an offset)."""
        return [copy.deepcopy(q.update) for q in self._bot(token).queue]

    async def wait_for_sent(
        self,
        chat_id: int,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109  # the brief's API: a plain timeout argument
    ) -> list[SentItem]:
        """Wait until the chat has at least ``count`` new messages from the bot; return them."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.sent(chat_id)
            if len(items) >= count:
                return items
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                texts = [item.text for item in items]
                raise TimeoutError(
                    f"chat {chat_id}: expected {count} messages within {timeout}s, "
                    f"got {len(items)}: {texts!r}"
                )
            await self._wait_change(remaining)

    async def wait_until_idle(
        self,
        quiet: float = 0.3,
        timeout: float = 10.0,  # noqa: ASYNC109  # the brief's API: a plain timeout argument
    ) -> None:
        """Return once every queued update was fetched and no call arrived for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            undelivered = sum(
                1 for bot in self._bots.values() for q in bot.queue if not q.delivered
            )
            idle_for = now - self._last_activity
            if not undelivered and not self._inflight and idle_for >= quiet:
                return
            if now >= deadline:
                raise TimeoutError(
                    f"fake Bot API not idle after {timeout}s: {undelivered} undelivered "
                    f"updates, {self._inflight} calls in flight, idle for {idle_for:.2f}s"
                )
            wait = quiet - idle_for if idle_for < quiet else quiet
            await self._wait_change(max(0.005, min(wait, deadline - now)))

    # -- internals: state helpers ----------------------------------------------------------------

    def _bot(self, token: str | None) -> _BotState:
        """The state of a token (the constructor's token by default)."""
        return self._bots[token or self._default_token]

    @staticmethod
    def _sender(bot: _BotState) -> JSONDict:
        """The bot as "from" of its messages (Telegram omits the getMe-only capability flags)."""
        return {key: bot.user[key] for key in ("id", "is_bot", "first_name", "username")}

    def _touch(self) -> None:
        """Note activity and wake everyone waiting for a change."""
        self._last_activity = time.monotonic()
        self._notify()

    def _notify(self) -> None:
        """Wake long polls and waiters; they re-check their condition."""
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_change(self, timeout: float) -> None:  # noqa: ASYNC109  # internal helper
        """Sleep until something changes or ``timeout`` seconds pass."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            self._waiters.discard(waiter)

    def _enqueue(self, bot: _BotState, update: JSONDict) -> JSONDict:
        """Give an update the next update_id and queue it."""
        update = {"update_id": bot.next_update_id, **update}
        bot.next_update_id += 1
        bot.queue.append(_QueuedUpdate(update))
        self._touch()
        return copy.deepcopy(update)

    def _remember_user(
        self, user_id: int, first_name: str, username: str | None, language_code: str
    ) -> JSONDict:
        """Store (and return) the User object used as "from" of a user's updates."""
        user: JSONDict = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language_code,
        }
        if username:
            user["username"] = username
        self._users[user_id] = user
        return copy.deepcopy(user)

    def _default_user(self) -> JSONDict:
        """A plausible user for updates that do not say who sent them."""
        return copy.deepcopy(
            self._users.get(DEFAULT_USER_ID)
            or self._remember_user(DEFAULT_USER_ID, "Test", None, "en")
        )

    def _next_mid(self, chat_id: int) -> int:
        """Next message_id in a chat (shared by the users' and the bot's messages)."""
        mid = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = mid + 1
        return mid

    def _store_message(self, message: JSONDict) -> None:
        """Remember a message so it can be edited, copied, replied to or pressed."""
        chat_id = message["chat"]["id"]
        mid = int(message["message_id"])
        self._messages.setdefault(chat_id, {})[mid] = message
        # Keep the counter ahead of explicitly numbered injected messages.
        self._next_message_id[chat_id] = max(self._next_message_id.get(chat_id, 1), mid + 1)

    def _reply_copy(self, chat: JSONDict, message_id: int) -> JSONDict:
        """The reply_to_message for a reply (Telegram does not nest replies further)."""
        stored = self._messages.get(chat["id"], {}).get(message_id)
        if stored is None:
            return {"message_id": message_id, "date": int(time.time()), "chat": copy.deepcopy(chat)}
        return {k: copy.deepcopy(v) for k, v in stored.items() if k != "reply_to_message"}

    def _complete_message(self, message: JSONDict, *, channel: bool) -> None:
        """Fill missing chat/from/date/message_id of an injected message in place."""
        if channel:
            message.setdefault(
                "chat", {"id": -1001000000000, "type": "channel", "title": "Test channel"}
            )
        elif "chat" not in message:
            sender = message.setdefault("from", self._default_user())
            chat = self._chats.get(sender["id"]) or self.add_chat(
                sender["id"], first_name=sender.get("first_name", "Test")
            )
            message["chat"] = copy.deepcopy(chat)
        chat = message["chat"]
        if chat["id"] not in self._chats:
            self._chats[chat["id"]] = copy.deepcopy(chat)
        if not channel and "from" not in message and "sender_chat" not in message:
            user = self._users.get(chat["id"]) if chat.get("type") == "private" else None
            message["from"] = copy.deepcopy(user) if user else self._default_user()
        message.setdefault("date", int(time.time()))
        message.setdefault("message_id", self._next_mid(chat["id"]))

    def _complete_member_update(self, bot: _BotState, body: JSONDict, kind: str) -> None:
        """Fill a (my_)chat_member update and apply a private-chat block/unblock it implies."""
        if "chat" not in body:
            sender = body.setdefault("from", self._default_user())
            body["chat"] = copy.deepcopy(
                self._chats.get(sender["id"]) or self.add_chat(sender["id"])
            )
        chat = body["chat"]
        self._chats.setdefault(chat["id"], copy.deepcopy(chat))
        body.setdefault("from", self._default_user())
        body.setdefault("date", int(time.time()))
        subject = self._sender(bot) if kind == "my_chat_member" else body["from"]
        body.setdefault("old_chat_member", {"status": "member", "user": copy.deepcopy(subject)})
        body.setdefault(
            "new_chat_member", {"status": "kicked", "user": copy.deepcopy(subject), "until_date": 0}
        )
        # Telegram sends my_chat_member "kicked" when a user blocks the bot; mirror the effect
        # so later sends fail the way they would in production.
        if kind == "my_chat_member" and chat.get("type") == "private":
            status = body["new_chat_member"].get("status")
            if status == "kicked":
                bot.blocked.add(chat["id"])
            elif status == "member":
                bot.blocked.discard(chat["id"])

    def _register_files(self, value: Any) -> None:
        """Make every file_id found in an injected update downloadable via getFile."""
        if isinstance(value, dict):
            file_id = value.get("file_id")
            if isinstance(file_id, str) and file_id not in self._files:
                unique = str(value.get("file_unique_id") or f"u{file_id}"[:32])
                stored = _StoredFile(file_id, unique, f"files/{file_id}")
                self._files[file_id] = stored
                self._file_paths[stored.file_path] = stored
            for item in value.values():
                self._register_files(item)
        elif isinstance(value, list):
            for item in value:
                self._register_files(item)

    def _new_callback_id(self) -> str:
        """A unique callback query id."""
        self._callback_counter += 1
        return f"{int(time.time() * 1000)}{self._callback_counter:06d}"

    def _new_file(self, upload: _Upload | None) -> _StoredFile:
        """Create a file_id for an upload (or a URL, when ``upload`` is None)."""
        self._file_counter += 1
        file_id = f"FAKE{self._file_counter:08d}{secrets.token_hex(8)}"
        stored = _StoredFile(
            file_id,
            f"U{self._file_counter:08d}",
            f"files/{file_id}",
            content=upload.data if upload else None,
        )
        self._files[file_id] = stored
        self._file_paths[stored.file_path] = stored
        return stored

    # -- internals: HTTP ------------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> tuple[JSONDict, dict[str, _Upload]]:
        """Read query + JSON/urlencoded/multipart body into raw params and file parts."""
        raw: JSONDict = dict(request.query)
        uploads: dict[str, _Upload] = {}
        if request.method not in ("POST", "PUT"):
            return raw, uploads
        if request.content_type == "application/json":
            body = await request.read()
            if body.strip():
                try:
                    data = json.loads(body)
                except ValueError:
                    raise _bad_request("can't parse JSON encoded request") from None
                if not isinstance(data, dict):
                    raise _bad_request("JSON object expected")
                raw.update(data)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    # aiohttp spools parts to temp files; close them to not leak descriptors.
                    with value.file:
                        data_bytes = value.file.read()
                    uploads[key] = _Upload(key, value.filename, value.content_type, data_bytes)
                else:
                    raw[key] = value
        return raw, uploads

    async def _handle_api(self, request: web.Request) -> web.Response:
        """Serve /bot<token>/<method>."""
        token = request.match_info["token"]
        method = request.match_info["method"]
        key = method.lower()
        arrival = time.monotonic()
        is_poll = key == "getupdates"
        if not is_poll:
            # Long polls are not "activity": an idle bot always has one pending.
            self._inflight += 1
            self._last_activity = arrival
        params: JSONDict = {}
        status = 200
        result: Any = None
        description: str | None = None
        try:
            try:
                raw, uploads = await self._read_body(request)
                params = dict(raw)
                if self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000)
                bot = self._bots.get(token)
                if bot is None:
                    raise ApiError(401, "Unauthorized")
                entry = self._handlers.get(key)
                if entry is None and not is_poll:
                    raise ApiError(404, "Not Found: method not found")
                self._raise_fault(key)
                params = normalize_params(raw)
                if is_poll:
                    result = await self._m_get_updates(bot, params, request)
                elif entry is not None:
                    result = entry[1](bot, params, uploads)
                body: JSONDict = {"ok": True, "result": result}
            except ApiError as exc:
                status, description, body = exc.status, exc.description, exc.payload()
            except _ClientGone:
                return web.Response(status=499)
        finally:
            if not is_poll:
                self._inflight -= 1
                self._last_activity = time.monotonic()
        record = CallRecord(
            method=method,
            params=params,
            status=status,
            time=arrival,
            token=token,
            description=description,
            duration=time.monotonic() - arrival,
            result=copy.deepcopy(result),
        )
        self.calls.append(record)
        if status != 200:
            self.errors.append(record)
        self._notify()
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        """Serve /file/bot<token>/<file_path> for files the fake knows."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        stored = self._file_paths.get(request.match_info["path"])
        if request.match_info["token"] not in self._bots or stored is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=stored.body(), content_type="application/octet-stream")

    def _raise_fault(self, key: str) -> None:
        """Raise the next queued fail_next fault for this method, if any."""
        faults = self._faults.get(key)
        if not faults:
            return
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        if fault.status == 429:
            error = _too_many_requests(fault.retry_after)
            if fault.description:
                error.description = fault.description
            raise error
        if fault.description:
            raise ApiError(fault.status, fault.description)
        prefixes = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict"}
        if fault.status in prefixes:
            raise ApiError(fault.status, f"{prefixes[fault.status]}: injected failure")
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Injected failure"
        raise ApiError(fault.status, phrase)

    # -- internals: control API for the standalone server -------------------------------------

    def _control_routes(self) -> dict[str, Callable[..., Any]]:
        """POST /_fake/<action> (JSON kwargs) -> the test-side method of the same name."""
        return {
            "inject_message": self.inject_message,
            "inject_callback": self.inject_callback,
            "inject_update": lambda **kw: self.inject_update(kw),
            "inject_raw": lambda **kw: self.inject_raw(kw),
            "add_chat": self.add_chat,
            "add_bot": self.add_bot,
            "block": self.block,
            "unblock": self.unblock,
            "fail_next": self.fail_next,
            "clear_records": self.clear_records,
        }

    async def _handle_control(self, request: web.Request) -> web.Response:
        """Serve the /_fake/ control API (GET sent, GET stats, POST <test-side method>)."""
        action = request.match_info["action"]
        if request.method == "GET" and action == "sent":
            chat_id = request.query.get("chat_id")
            items = self.sent(
                int(chat_id) if chat_id else None,
                request.query.get("method"),
                include_edits=request.query.get("include_edits") == "1",
            )
            return web.json_response([asdict(item) for item in items])
        if request.method == "GET" and action == "stats":
            return web.json_response(self._stats())
        target = self._control_routes().get(action)
        if request.method != "POST" or target is None:
            return web.json_response({"ok": False, "description": "unknown control"}, status=404)
        kwargs = await request.json() if request.can_read_body else {}
        try:
            result = target(**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            return web.json_response({"ok": False, "description": repr(exc)}, status=400)
        return web.json_response({"ok": True, "result": result})

    def _stats(self) -> JSONDict:
        """Counters for benchmarks."""
        return {
            "calls": len(self.calls),
            "errors": len(self.errors),
            "sent": len(self._sent),
            "flood_429_count": self.flood_429_count,
            "pending_updates": sum(len(bot.queue) for bot in self._bots.values()),
            "calls_by_method": dict(Counter(call.method for call in self.calls)),
        }

    # -- internals: validation helpers -----------------------------------------------------------

    def _require_chat(self, params: JSONDict, key: str = "chat_id") -> JSONDict:
        """The chat named by ``params[key]`` (id or @username) or 400 chat not found."""
        raw = params.get(key)
        if raw is None or raw == "":
            raise _bad_request(f"{key} is empty")
        if isinstance(raw, str):
            if raw.startswith("@"):
                for chat in self._chats.values():
                    if chat.get("username", "").lower() == raw[1:].lower():
                        return chat
            raise _bad_request("chat not found")
        chat = self._chats.get(int(raw))
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _check_access(self, bot: _BotState, chat: JSONDict) -> None:
        """403 when the user blocked the bot or the bot is not in the group any more."""
        chat_id = chat["id"]
        if chat["type"] == "private":
            if chat_id in bot.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            return
        kind = "channel" if chat["type"] == "channel" else chat["type"]
        if chat_id in bot.kicked_chats:
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        if chat_id in bot.left_chats:
            raise ApiError(403, f"Forbidden: bot is not a member of the {kind} chat")

    def _check_thread(self, chat: JSONDict, thread_id: Any) -> int | None:
        """Validate message_thread_id for chats with topics; return the id to echo back."""
        if thread_id is None:
            return None
        topics = self._topics.get(chat["id"])
        if not chat.get("is_forum") and not topics:
            return None  # Telegram ignores the thread id where there are no topics
        topic = (topics or {}).get(int(thread_id))
        if topic is None:
            if thread_id == 1 and chat.get("is_forum"):
                return 1  # the General topic always exists
            raise _bad_request("message thread not found")
        if topic.closed:
            raise _bad_request("TOPIC_CLOSED")
        return int(thread_id)

    def _target(self, bot: _BotState, params: JSONDict) -> tuple[JSONDict, int | None]:
        """Resolve chat_id and message_thread_id of a send, with access checks."""
        chat = self._require_chat(params)
        self._check_access(bot, chat)
        return chat, self._check_thread(chat, params.get("message_thread_id"))

    def _format(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSONDict]]:
        """Apply parse_mode (or explicit entities) and return (plain text, entities)."""
        if entities is not None:
            if not isinstance(entities, list):
                raise _bad_request("can't parse entities JSON object")
            return text, entities
        mode = str(parse_mode or "").lower()
        if not mode:
            return text, []
        if mode == "html":
            return parse_html(text, strict_entities=self.strict_html_entities)
        if mode == "markdownv2":
            return parse_markdown_v2(text)
        if mode == "markdown":
            return parse_markdown(text)
        raise _bad_request(f"unsupported parse_mode {parse_mode!r}")

    def _format_caption(self, params: JSONDict) -> tuple[str | None, list[JSONDict]]:
        """Parse and length-check a caption (may be absent)."""
        caption = params.get("caption")
        if caption is None or caption == "":
            return None, []
        plain, entities = self._format(
            str(caption), params.get("parse_mode"), params.get("caption_entities")
        )
        if len(plain) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        return plain, entities

    def _check_markup(self, markup: Any) -> JSONDict | None:
        """Validate reply_markup; return it when it is an inline keyboard (stored on messages)."""
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad_request(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    self._check_inline_button(button)
            return markup if any(rows) else None
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad_request(
                    'field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    text = button.get("text") if isinstance(button, dict) else button
                    if not isinstance(text, str) or not text:
                        raise _bad_request("can't parse keyboard button: Text must be non-empty")
            return None
        if "remove_keyboard" in markup or "force_reply" in markup:
            return None
        raise _bad_request("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _check_inline_button(button: Any) -> None:
        """Validate one InlineKeyboardButton like Telegram does."""
        if not isinstance(button, dict):
            raise _bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        text = button.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
        actions = [name for name in _INLINE_BUTTON_ACTIONS if name in button]
        if not actions:
            raise _bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline "
                "keyboard"
            )
        if len(actions) > 1:
            raise _bad_request(
                "can't parse inline keyboard button: exactly one of the optional fields must be "
                f"used, got {', '.join(actions)}"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            size = len(data.encode()) if isinstance(data, str) else 0
            if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            if not isinstance(url, str) or not re.match(
                r"^(?:(?:https?|tg)://\S+|[\w-]+(?:\.[\w-]+)+(?:/\S*)?)$", url, re.IGNORECASE
            ):
                raise _bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")

    def _check_flood(self, bot: _BotState, chat_id: int) -> None:
        """Sliding-window flood control: N sends/s per bot and M sends/s per chat."""
        if not self.enforce_flood_limits:
            return
        now = time.monotonic()
        window = bot.flood_chat.setdefault(chat_id, deque())
        for queue in (bot.flood_all, window):
            while queue and queue[0] <= now - 1.0:
                queue.popleft()
        wait = 0.0
        if len(bot.flood_all) >= self.flood_global_per_second:
            wait = bot.flood_all[-self.flood_global_per_second] + 1.0 - now
        if len(window) >= self.flood_chat_per_second:
            wait = max(wait, window[-self.flood_chat_per_second] + 1.0 - now)
        if wait > 0:
            self.flood_429_count += 1
            raise _too_many_requests(max(1, math.ceil(wait)))
        bot.flood_all.append(now)
        window.append(now)

    def _resolve_reply(self, chat: JSONDict, params: JSONDict) -> JSONDict | None:
        """The replied-to message for reply_parameters / reply_to_message_id."""
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        message_id: Any = params.get("reply_to_message_id")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        if message_id is None:
            return None
        if int(message_id) not in self._messages.get(chat["id"], {}):
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return self._reply_copy(chat, int(message_id))

    def _own_message(
        self, bot: _BotState, params: JSONDict, missing: str
    ) -> tuple[JSONDict, JSONDict]:
        """Chat and stored bot message named by chat_id/message_id, for edits."""
        chat = self._require_chat(params)
        self._check_access(bot, chat)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message_id is empty")
        message = self._messages.get(chat["id"], {}).get(int(message_id))
        if message is None:
            raise _bad_request(missing)
        if message.get("from", {}).get("id") != bot.user["id"]:
            raise _bad_request("message can't be edited")
        return chat, message

    def _post_message(
        self,
        bot: _BotState,
        chat: JSONDict,
        thread_id: int | None,
        content: JSONDict,
        *,
        markup: JSONDict | None = None,
        reply_to: JSONDict | None = None,
    ) -> JSONDict:
        """Store a new message from the bot (after the flood check) and return it."""
        self._check_flood(bot, chat["id"])
        message: JSONDict = {
            "message_id": self._next_mid(chat["id"]),
            "from": self._sender(bot),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message.update(copy.deepcopy(content))
        if markup is not None:
            message["reply_markup"] = copy.deepcopy(markup)
        self._store_message(message)
        return message

    def _record_sent(
        self,
        bot: _BotState,
        method: str,
        chat_id: int,
        params: JSONDict,
        message: JSONDict | None,
        *,
        message_id: int | None = None,
        text: str | None = None,
        raw_text: str | None = None,
    ) -> None:
        """Append a SentItem and wake waiters."""
        markup = params.get("reply_markup")
        thread = params.get("message_thread_id")
        self._sent.append(
            SentItem(
                method=method,
                chat_id=chat_id,
                message_id=message_id
                if message_id is not None
                else (message or {}).get("message_id"),
                text=text,
                parse_mode=params.get("parse_mode"),
                reply_markup=copy.deepcopy(markup) if isinstance(markup, dict) else None,
                message_thread_id=int(thread) if thread is not None else None,
                params=copy.deepcopy(params),
                raw_text=raw_text,
                message=copy.deepcopy(message),
                token=bot.token,
                time=time.monotonic(),
            )
        )
        self._notify()

    # -- Bot API methods --------------------------------------------------------------------------

    def _register_handlers(self) -> None:
        """Map lower-case method names (Telegram ignores case) to handlers."""
        handlers: dict[str, _Handler] = {
            "getMe": self._m_get_me,
            "deleteWebhook": self._m_delete_webhook,
            "setWebhook": self._m_set_webhook,
            "getWebhookInfo": self._m_get_webhook_info,
            "logOut": self._m_true,
            "close": self._m_true,
            "setMyCommands": self._m_set_my_commands,
            "getMyCommands": self._m_get_my_commands,
            "deleteMyCommands": self._m_delete_my_commands,
            "setChatMenuButton": self._m_set_chat_menu_button,
            "getChatMenuButton": self._m_get_chat_menu_button,
            "sendMessage": self._m_send_message,
            "editMessageText": self._m_edit_message_text,
            "editMessageCaption": self._m_edit_message_caption,
            "editMessageReplyMarkup": self._m_edit_message_reply_markup,
            "deleteMessage": self._m_delete_message,
            "answerCallbackQuery": self._m_answer_callback_query,
            "sendChatAction": self._m_send_chat_action,
            "copyMessage": self._m_copy_message,
            "forwardMessage": self._m_forward_message,
            "leaveChat": self._m_leave_chat,
            "getChat": self._m_get_chat,
            "getFile": self._m_get_file,
            "createForumTopic": self._m_create_forum_topic,
            "closeForumTopic": self._m_close_forum_topic,
            "reopenForumTopic": self._m_reopen_forum_topic,
            "editForumTopic": self._m_edit_forum_topic,
        }
        for kind in ("photo", "document", "voice", "audio", "video", "animation", "sticker"):
            handlers[f"send{kind.capitalize()}"] = self._media_sender(kind)
        self._handlers = {name.lower(): (name, handler) for name, handler in handlers.items()}
        # getUpdates is async and handled in _handle_api; listed for the canonical name only.
        self._handlers["getupdates"] = ("getUpdates", self._m_true)

    async def _m_get_updates(
        self, bot: _BotState, params: JSONDict, request: web.Request
    ) -> list[JSONDict]:
        """getUpdates with offset confirmation, limit, allowed_updates and long polling."""
        if bot.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        limit = int(params.get("limit") or 100)
        limit = min(max(limit, 1), 100)
        timeout = min(max(float(params.get("timeout") or 0), 0.0), 50.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list):
                raise _bad_request("can't parse allowed_updates JSON object")
            bot.allowed_updates = [str(kind) for kind in allowed]
        if bot.poll is not None:
            bot.poll.conflicted = True  # Telegram terminates the older of two getUpdates
            self._notify()
        poll = _Poll(request)
        bot.poll = poll
        try:
            self._confirm(bot, params.get("offset"))
            deadline = time.monotonic() + timeout
            while True:
                if poll.conflicted:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        # The older poll was abandoned (PTB cancelled it) and its disconnect
                        # raced the new call: not a real conflict, so do not report one.
                        raise _ClientGone
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                batch = self._take_updates(bot, limit)
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0 or self._closing:
                    return batch
                await self._wait_change(remaining)
        finally:
            if bot.poll is poll:
                bot.poll = None

    @staticmethod
    def _confirm(bot: _BotState, offset: Any) -> None:
        """Forget updates confirmed by ``offset`` (negative: keep only the last -offset)."""
        if not offset:
            return
        offset = int(offset)
        if offset > 0:
            bot.queue = [
                q for q in bot.queue if q.update_id >= offset or (q.forced and not q.delivered)
            ]
        else:
            bot.queue = bot.queue[offset:]

    def _take_updates(self, bot: _BotState, limit: int) -> list[JSONDict]:
        """Return up to ``limit`` queued updates (dropping types not in allowed_updates)."""
        allowed = set(bot.allowed_updates)
        kept: list[_QueuedUpdate] = []
        for queued in bot.queue:
            kind = next((k for k in queued.update if k != "update_id"), "")
            wanted = kind in allowed if allowed else kind not in _NOT_DEFAULT_UPDATES
            if wanted or queued.forced:
                kept.append(queued)
        bot.queue = kept
        batch = kept[:limit]
        for queued in batch:
            queued.delivered = True
        if batch:
            self._last_activity = time.monotonic()
        return [copy.deepcopy(queued.update) for queued in batch]

    def _m_true(self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]) -> bool:
        """Methods that just succeed (logOut, close)."""
        return True

    def _m_get_me(self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]) -> JSONDict:
        """getMe."""
        return copy.deepcopy(bot.user)

    def _m_delete_webhook(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """deleteWebhook (optionally dropping pending updates)."""
        bot.webhook_url = ""
        if params.get("drop_pending_updates"):
            bot.queue.clear()
        return True

    def _m_set_webhook(self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]) -> bool:
        """setWebhook (an empty url removes it)."""
        url = str(params.get("url") or "")
        if url and not url.lower().startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        bot.webhook_url = url
        if params.get("drop_pending_updates"):
            bot.queue.clear()
        if isinstance(params.get("allowed_updates"), list):
            bot.allowed_updates = [str(kind) for kind in params["allowed_updates"]]
        return True

    def _m_get_webhook_info(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """getWebhookInfo."""
        info: JSONDict = {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.queue),
        }
        if bot.allowed_updates:
            info["allowed_updates"] = list(bot.allowed_updates)
        return info

    @staticmethod
    def _commands_key(params: JSONDict) -> str:
        """Storage key of a command list: scope + language."""
        scope = params.get("scope") or {"type": "default"}
        return f"{_canonical_json(scope)}|{params.get('language_code') or ''}"

    def _m_set_my_commands(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """setMyCommands with Telegram's command/description rules."""
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("too many commands")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse BotCommand: BotCommand must be an Object")
            if not _BOT_COMMAND_NAME_RE.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        bot.commands[self._commands_key(params)] = copy.deepcopy(commands)
        return True

    def _m_get_my_commands(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> list[JSONDict]:
        """getMyCommands."""
        return copy.deepcopy(bot.commands.get(self._commands_key(params), []))

    def _m_delete_my_commands(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """deleteMyCommands."""
        bot.commands.pop(self._commands_key(params), None)
        return True

    def _m_set_chat_menu_button(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """setChatMenuButton (per chat or the default one)."""
        chat_id = self._require_chat(params)["id"] if params.get("chat_id") else None
        button = params.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise _bad_request("can't parse menu button")
        bot.menu_buttons[chat_id] = copy.deepcopy(button)
        return True

    def _m_get_chat_menu_button(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """getChatMenuButton."""
        chat_id = self._require_chat(params)["id"] if params.get("chat_id") else None
        button = bot.menu_buttons.get(chat_id) or bot.menu_buttons.get(None)
        return copy.deepcopy(button) if button else {"type": "default"}

    def _m_send_message(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """sendMessage."""
        chat, thread_id = self._target(bot, params)
        text = params.get("text")
        if text is None or text == "":
            raise _bad_request("message text is empty")
        plain, entities = self._format(str(text), params.get("parse_mode"), params.get("entities"))
        if not plain.strip():
            raise _bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._resolve_reply(chat, params)
        content: JSONDict = {"text": plain}
        if entities:
            content["entities"] = entities
        message = self._post_message(
            bot, chat, thread_id, content, markup=markup, reply_to=reply_to
        )
        self._record_sent(
            bot, "sendMessage", chat["id"], params, message, text=plain, raw_text=str(text)
        )
        return copy.deepcopy(message)

    def _media_sender(self, kind: str) -> _Handler:
        """Build the handler of send<Kind> (photo, document, voice, ...)."""
        method = f"send{kind.capitalize()}"

        def handler(bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]) -> JSONDict:
            """Send a media message with an optional caption."""
            chat, thread_id = self._target(bot, params)
            media = self._media_object(kind, params, uploads)
            caption, caption_entities = (
                (None, []) if kind == "sticker" else self._format_caption(params)
            )
            markup = self._check_markup(params.get("reply_markup"))
            reply_to = self._resolve_reply(chat, params)
            content: JSONDict = {kind: media}
            if caption is not None:
                content["caption"] = caption
                if caption_entities:
                    content["caption_entities"] = caption_entities
            message = self._post_message(
                bot, chat, thread_id, content, markup=markup, reply_to=reply_to
            )
            raw = params.get("caption")
            self._record_sent(
                bot,
                method,
                chat["id"],
                params,
                message,
                text=caption,
                raw_text=str(raw) if raw is not None else None,
            )
            return copy.deepcopy(message)

        return handler

    def _media_object(
        self, kind: str, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict | list[JSONDict]:
        """The PhotoSize list / Document / Voice / ... object for a sent file."""
        value: Any = uploads.get(kind, params.get(kind))
        if isinstance(value, str) and value.startswith("attach://"):
            value = uploads.get(value.removeprefix("attach://"))
            if value is None:
                raise _bad_request(f"file attach not found for {kind}")
        if value is None or value == "":
            raise _bad_request(f"there is no {kind} in the request")
        upload = value if isinstance(value, _Upload) else None
        if upload is not None:
            stored = self._new_file(upload)
        elif re.match(r"^https?://", str(value), re.IGNORECASE):
            stored = self._new_file(None)
        else:
            known = self._files.get(str(value))
            if known is None:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            stored = known
        base: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
        }
        if kind == "photo":
            return [{**base, "width": 800, "height": 600}]
        if kind == "document":
            filename = (upload.filename if upload else None) or "document"
            mime = (upload.content_type if upload else None) or "application/octet-stream"
            return {**base, "file_name": filename, "mime_type": mime}
        if kind in ("voice", "audio"):
            mime = "audio/ogg" if kind == "voice" else "audio/mpeg"
            return {**base, "duration": int(params.get("duration") or 1), "mime_type": mime}
        if kind in ("video", "animation"):
            return {
                **base,
                "width": int(params.get("width") or 640),
                "height": int(params.get("height") or 480),
                "duration": int(params.get("duration") or 1),
            }
        return {
            **base,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }

    def _m_edit_message_text(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict | bool:
        """editMessageText (omitting reply_markup removes the inline keyboard, as on Telegram)."""
        text = params.get("text")
        if text is None or text == "":
            raise _bad_request("message text is empty")
        plain, entities = self._format(str(text), params.get("parse_mode"), params.get("entities"))
        if not plain.strip():
            raise _bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True  # inline messages are not stored; accept the edit
        chat, message = self._own_message(bot, params, "message to edit not found")
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        if (
            message["text"] == plain
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        ):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message["text"] = plain
        self._set_or_pop(message, "entities", entities or None)
        self._set_or_pop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        self._record_sent(
            bot, "editMessageText", chat["id"], params, message, text=plain, raw_text=str(text)
        )
        return copy.deepcopy(message)

    def _m_edit_message_caption(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict | bool:
        """editMessageCaption."""
        caption, entities = self._format_caption(params)
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        chat, message = self._own_message(bot, params, "message to edit not found")
        if not any(key in message for key in _CONTENT_KEYS[4:]):
            raise _bad_request("there is no caption in the message to edit")
        if (
            message.get("caption") == caption
            and message.get("caption_entities", []) == entities
            and message.get("reply_markup") == markup
        ):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._set_or_pop(message, "caption", caption)
        self._set_or_pop(message, "caption_entities", entities or None)
        self._set_or_pop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        self._record_sent(
            bot,
            "editMessageCaption",
            chat["id"],
            params,
            message,
            text=caption,
            raw_text=params.get("caption"),
        )
        return copy.deepcopy(message)

    def _m_edit_message_reply_markup(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict | bool:
        """editMessageReplyMarkup (no reply_markup removes the keyboard)."""
        markup = self._check_markup(params.get("reply_markup"))
        if params.get("inline_message_id"):
            return True
        chat, message = self._own_message(bot, params, "message to edit not found")
        if message.get("reply_markup") == markup:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._set_or_pop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        self._record_sent(bot, "editMessageReplyMarkup", chat["id"], params, message)
        return copy.deepcopy(message)

    @staticmethod
    def _set_or_pop(message: JSONDict, key: str, value: Any) -> None:
        """Set a message field, or remove it when the new value is empty."""
        if value is None:
            message.pop(key, None)
        else:
            message[key] = copy.deepcopy(value)

    def _m_delete_message(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """deleteMessage (bots may delete their own and, in private chats, users' messages)."""
        chat = self._require_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message_id is empty")
        stored = self._messages.get(chat["id"], {}).pop(int(message_id), None)
        if stored is None:
            raise _bad_request("message to delete not found")
        self._record_sent(
            bot, "deleteMessage", chat["id"], params, None, message_id=int(message_id)
        )
        return True

    def _m_answer_callback_query(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """answerCallbackQuery (each query can be answered once)."""
        query = bot.callbacks.pop(str(params.get("callback_query_id") or ""), None)
        if query is None:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        self.callback_answers.append({"query": query, **copy.deepcopy(params)})
        return True

    def _m_send_chat_action(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """sendChatAction."""
        self._target(bot, params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _source_message(self, params: JSONDict, missing: str) -> JSONDict:
        """The message named by from_chat_id/message_id, for copies and forwards."""
        source_chat = self._require_chat(params, "from_chat_id")
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad_request("message_id is empty")
        source = self._messages.get(source_chat["id"], {}).get(int(message_id))
        if source is None:
            raise _bad_request(missing)
        if not any(key in source for key in _CONTENT_KEYS):
            raise _bad_request("message can't be copied")
        return source

    def _m_copy_message(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """copyMessage: returns a MessageId."""
        chat, thread_id = self._target(bot, params)
        source = self._source_message(params, "message to copy not found")
        content = {key: source[key] for key in _CONTENT_KEYS if key in source}
        if "caption" in params and "text" not in content:
            caption, entities = self._format_caption(params)
            self._set_or_pop(content, "caption", caption)
            self._set_or_pop(content, "caption_entities", entities or None)
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._resolve_reply(chat, params)
        message = self._post_message(
            bot, chat, thread_id, content, markup=markup, reply_to=reply_to
        )
        visible = content.get("text", content.get("caption"))
        self._record_sent(
            bot,
            "copyMessage",
            chat["id"],
            params,
            message,
            text=visible,
            raw_text=params.get("caption", visible),
        )
        return {"message_id": message["message_id"]}

    def _m_forward_message(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """forwardMessage: returns the new Message with forward_origin."""
        chat, thread_id = self._target(bot, params)
        source = self._source_message(params, "message to forward not found")
        content: JSONDict = {key: source[key] for key in _CONTENT_KEYS if key in source}
        if source["chat"].get("type") == "channel":
            content["forward_origin"] = {
                "type": "channel",
                "chat": source["chat"],
                "message_id": source["message_id"],
                "date": source["date"],
            }
        else:
            sender = source.get("from") or self._default_user()
            content["forward_origin"] = {
                "type": "user",
                "sender_user": sender,
                "date": source["date"],
            }
        message = self._post_message(bot, chat, thread_id, content)
        visible = content.get("text", content.get("caption"))
        self._record_sent(
            bot, "forwardMessage", chat["id"], params, message, text=visible, raw_text=visible
        )
        return copy.deepcopy(message)

    def _m_leave_chat(self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]) -> bool:
        """leaveChat: later sends to that chat answer 403."""
        chat = self._require_chat(params)
        if chat["type"] == "private":
            raise _bad_request("chat member status can't be changed in private chats")
        bot.left_chats.add(chat["id"])
        return True

    def _m_get_chat(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """getChat: a ChatFullInfo (PTB 22 requires the gift/colour fields)."""
        info = copy.deepcopy(self._require_chat(params))
        info.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return info

    def _m_get_file(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """getFile for uploaded, injected or add_file() files."""
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    def _forum_chat(self, bot: _BotState, params: JSONDict) -> JSONDict:
        """A chat that can have topics (forum supergroups and private chats)."""
        chat = self._require_chat(params)
        self._check_access(bot, chat)
        if chat["type"] != "private" and not chat.get("is_forum"):
            raise _bad_request("the chat is not a forum")
        return chat

    def _topic(self, bot: _BotState, params: JSONDict) -> _Topic:
        """The topic named by chat_id/message_thread_id."""
        chat = self._forum_chat(bot, params)
        thread_id = params.get("message_thread_id")
        topic = self._topics.get(chat["id"], {}).get(int(thread_id or 0))
        if topic is None:
            raise _bad_request("TOPIC_ID_INVALID")
        return topic

    def _m_create_forum_topic(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> JSONDict:
        """createForumTopic: the thread id is the id of the topic's service message."""
        chat = self._forum_chat(bot, params)
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise _bad_request("TOPIC_NAME_INVALID")
        color = int(params.get("icon_color") or DEFAULT_TOPIC_COLOR)
        if color not in TOPIC_COLORS:
            raise _bad_request("TOPIC_ICON_COLOR_INVALID")
        emoji = params.get("icon_custom_emoji_id") or None
        topic = _Topic(name, color, emoji)
        thread_id = self._next_mid(chat["id"])
        self._topics.setdefault(chat["id"], {})[thread_id] = topic
        service: JSONDict = {
            "message_id": thread_id,
            "from": self._sender(bot),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            "message_thread_id": thread_id,
            "forum_topic_created": {"name": name, "icon_color": color},
        }
        self._store_message(service)
        result: JSONDict = {"message_thread_id": thread_id, "name": name, "icon_color": color}
        if emoji:
            result["icon_custom_emoji_id"] = emoji
        return result

    def _m_close_forum_topic(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """closeForumTopic."""
        topic = self._topic(bot, params)
        if topic.closed:
            raise _bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    def _m_reopen_forum_topic(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """reopenForumTopic."""
        topic = self._topic(bot, params)
        if not topic.closed:
            raise _bad_request("TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    def _m_edit_forum_topic(
        self, bot: _BotState, params: JSONDict, uploads: dict[str, _Upload]
    ) -> bool:
        """editForumTopic (name and/or icon)."""
        topic = self._topic(bot, params)
        name = params.get("name")
        emoji = params.get("icon_custom_emoji_id")
        if name is not None and not 1 <= len(str(name)) <= 128:
            raise _bad_request("TOPIC_NAME_INVALID")
        changed = (name is not None and name != topic.name) or (
            emoji is not None and (emoji or None) != topic.icon_custom_emoji_id
        )
        if not changed:
            raise _bad_request("TOPIC_NOT_MODIFIED")
        if name is not None:
            topic.name = str(name)
        if emoji is not None:
            topic.icon_custom_emoji_id = emoji or None
        return True


# ---------------------------------------------------------------------------------------------
# Standalone server.
# ---------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    """Run the fake until SIGINT/SIGTERM."""
    tokens: list[str] = args.token or ["123:TEST"]
    api = FakeBotAPI(
        tokens[0],
        username=args.username,
        latency_ms=args.latency_ms,
        enforce_flood_limits=args.flood_limits,
        host=args.host,
        port=args.port,
    )
    for extra in tokens[1:]:
        api.add_bot(extra)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await api.start()
    print(f"fake Telegram Bot API on {api.base_url} for {', '.join(tokens)}", flush=True)
    freezer = asyncio.create_task(_keep_history_out_of_collections())
    try:
        await stop.wait()
    finally:
        freezer.cancel()
        await api.stop()


async def _keep_history_out_of_collections(every_s: float = 0.5) -> None:
    """Move what the fake has kept so far out of the garbage collector's reach, again and again.

    The fake keeps every update and message it has seen. As that grows, Python's full
    collections walk all of it: pauses of 45 to 130 ms were measured here in a benchmark
    run, which the bot under test would see as Telegram answering late, and the more so the
    later it is measured. Telegram has no such pauses, so neither should its stand-in.
    """
    while True:
        await asyncio.sleep(every_s)
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: python -m tests.botapi_fake --port 8081 --token 123:TEST."""
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", action="append", help="bot token (repeatable)")
    parser.add_argument("--username", default="kindred_test_bot")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--flood-limits", action="store_true", help="enforce flood limits")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
