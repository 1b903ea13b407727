"""Logs are JSON and carry no Telegram ids, bot tokens or message text, whoever logged them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import JsonFormatter, RedactionFilter, configure_logging, redact

TELEGRAM_ID = 7391846250
TEXT = "i relapsed last night and feel awful"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A logger whose records go through the production handler into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kindred.test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """Every JSON line written so far."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_with_an_id_and_message_text_comes_out_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("kindred.test.logging")
    log.info(
        "update from user %s in chat %d: text=%r",
        TELEGRAM_ID,
        -100 - TELEGRAM_ID,
        TEXT,
        extra={"text": TEXT, "user_id": TELEGRAM_ID, "kind": "text", "elapsed_ms": 12},
    )
    out = captured.getvalue()
    assert str(TELEGRAM_ID) not in out
    assert "relapsed" not in out
    entry = lines(captured)[0]
    assert entry["level"] == "info" and entry["logger"] == "kindred.test.logging"
    assert entry["text"] == "<redacted>" and entry["user_id"] == "<redacted>"
    assert entry["kind"] == "text" and entry["elapsed_ms"] == 12  # harmless fields survive
    assert "update from user <id> in chat -<id>" in str(entry["msg"])


def test_library_reprs_tracebacks_and_tokens_are_scrubbed(captured: io.StringIO) -> None:
    log = logging.getLogger("kindred.test.logging")
    # What PTB logs when it cannot build a context: the whole Update's repr.
    update_repr = (
        f"Update(message=Message(chat=Chat(first_name='Sam', id={TELEGRAM_ID}, type=private), "
        f"text='{TEXT}', from_user=User(id={TELEGRAM_ID}, username='sam_w')), update_id=912345678)"
    )
    log.error("Error while building CallbackContext for update %s", update_repr)
    log.info(
        "HTTP Request: POST https://api.telegram.org/bot123456789:AAH-secret_token_value_xyz/sendMessage"
    )
    try:
        raise ValueError(f"cannot handle {{'text': '{TEXT}', 'chat_id': {TELEGRAM_ID}}}")
    except ValueError:
        log.exception("handler failed")
    out = captured.getvalue()
    for secret in (str(TELEGRAM_ID), "relapsed", "Sam", "sam_w", "AAH-secret", "912345678"):
        assert secret not in out, secret
    entries = lines(captured)
    assert "Traceback" in str(entries[2]["exc"]) and "ValueError" in str(entries[2]["exc"])


def test_what_must_stay_readable_stays() -> None:
    # Durations, small counts, dates, ports and names of things are not identifiers.
    line = "handled craving -> idle in 0.1234567s, 3 replies, 2026-11-28, :8080, kindred_test_bot"
    assert redact(line) == line


def test_pseudonyms_are_identifiers_too() -> None:
    # Stable per person: a log full of them is a diary of who did what when.
    pseudonym = "3fa9c0127d4e8b2a" + "0" * 48
    assert redact(f"handled craving for {pseudonym[:12]} -> idle") == (
        "handled craving for <pseudonym> -> idle"
    )
    assert pseudonym not in redact(f"person {pseudonym} erased")


def test_configure_logging_installs_one_redacting_json_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    quieted = ("httpx", "httpcore", "telegram", "apscheduler", "uvicorn.access", "alembic")
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in quieted})
    try:
        configure_logging(logging.INFO, stream=stream)
        configure_logging(logging.INFO, stream=stream)  # idempotent: no doubled lines
        logging.getLogger("kindred.anything").warning("chat %s said %s", TELEGRAM_ID, "text=hi")
        assert len(root.handlers) == 1
        entry = json.loads(stream.getvalue().strip())
        assert entry["msg"] == "chat <id> said text=<redacted>"
        assert logging.getLogger("httpx").level == logging.WARNING
    finally:
        # Put everything back: other tests read httpx's INFO lines, and pytest's own handlers.
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
