"""Structured JSON logs that carry no identifiers and no message text.

Logs leave the process (docker logs, a log shipper, a support ticket), so whatever a library
or a careless line puts in a record is scrubbed on the way out: long digit runs (Telegram
user and chat ids, update ids, phone numbers), pseudonyms and their prefixes, bot tokens, and
the values of fields that hold what people wrote or who they are (`text=`, `first_name=`, ...).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonFormatter", "RedactionFilter", "configure_logging", "redact"]

REDACTED = "<redacted>"
ID_MARK = "<id>"
PSEUDONYM_MARK = "<pseudonym>"

# Fields whose value is what a person wrote or who they are: dropped whatever their shape.
SENSITIVE_FIELDS = (
    "text",
    "caption",
    "message_text",
    "first_name",
    "last_name",
    "username",
    "phone_number",
    "full_name",
    "title",
    "query",
    "note",
    # SQLAlchemy puts bound values in its errors: pseudonyms, encrypted chat ids, notes.
    "parameters",
)
_SENSITIVE_KEYS = frozenset(SENSITIVE_FIELDS) | {"chat_id", "user_id", "from_user", "chat"}

_FIELD = "|".join(SENSITIVE_FIELDS)
# key=value, key: value, 'key': 'value', "key": "value" -- with a quoted value (escapes allowed)
# or, unquoted, everything to the end of the line: we cannot know where free text ends.
_FIELD_VALUE = re.compile(
    rf"""(?P<key>["']?\b(?:{_FIELD})["']?\s*[=:]\s*)"""
    r"""(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\n]*)""",
    re.IGNORECASE,
)
# The token in Bot API URLs (.../bot123456:AA.../sendMessage) would let anyone run the bot.
_BOT_TOKEN = re.compile(r"\b(bot)?\d{5,}:[A-Za-z0-9_-]{20,}")
# Six or more digits standing alone: Telegram user/chat ids (5-13 digits in practice; the
# 5-digit ones are long gone), update ids, phone numbers. Not parts of words or hex pseudonyms,
# not decimals of a float.
_DIGITS = re.compile(r"(?<![\w.])\d{6,}(?!\w)(?!\.\d)")
# Pseudonyms (HMAC-SHA256 hex) and their prefixes: stable per person, so they would let anyone
# with the logs follow one person's activity, and match them to their row. 12+ hex digits alone.
_HEX = re.compile(r"(?<![\w-])[0-9a-f]{12,}(?![\w-])")
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    # uvicorn adds an ANSI-coloured copy of its message: noise in a JSON line.
    | {"message", "asctime", "color_message"}
)


def redact(text: str) -> str:
    """The text with identifiers and message contents replaced by markers."""
    text = _BOT_TOKEN.sub(lambda m: f"{m.group(1) or ''}{REDACTED}", text)
    text = _FIELD_VALUE.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
    text = _HEX.sub(PSEUDONYM_MARK, text)
    return _DIGITS.sub(ID_MARK, text)


def _clean(key: str, value: Any) -> Any:
    """An extra field's value, redacted (sensitive keys lose their value entirely)."""
    if key.lower() in _SENSITIVE_KEYS:
        return REDACTED
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # An int extra such as a user id: keep small counts, hide anything id-sized.
        return value if abs(value) < 100_000 else ID_MARK
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(key, v) for v in value]
    return redact(str(value))


class RedactionFilter(logging.Filter):
    """Rewrites each record so that no identifier or message text survives it; keeps them all."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Freeze the message (args merged in), redact it, its extras and any traceback."""
        if getattr(record, "_kindred_redacted", False):
            return True  # several handlers share the record: scrub once
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not cost the record
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message), ()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                setattr(record, key, _clean(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._kindred_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    level: int = logging.INFO, *, json_format: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record through the redaction filter to stderr (JSON by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactionFilter())
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO (the bot token is in it); PTB and the database
    # driver are chatty at INFO too. Their warnings still come through.
    for noisy in ("httpx", "httpcore", "telegram", "apscheduler", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
