"""An update the library cannot parse is skipped, and the people after it are still answered."""

from __future__ import annotations

import logging

import pytest

from bot.telegram.tolerant_bot import parse_updates
from tests.test_telegram_e2e import PERSON, RunningBot, bot  # noqa: F401 - the fixture

MALFORMED = {
    "update_id": 500,
    "message": {"message_id": "not a number", "date": "yesterday", "chat": "a string"},
}


def test_a_batch_that_parses_is_parsed_as_a_whole() -> None:
    raw = [{"update_id": 1}, {"update_id": 2}]
    assert [u.update_id for u in parse_updates(raw, None)] == [1, 2]


def test_an_unreadable_update_becomes_a_bare_one_and_its_neighbours_survive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = {
        "update_id": 501,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": PERSON, "type": "private"},
            "text": "my secret words",
        },
    }
    with caplog.at_level(logging.WARNING):
        updates = parse_updates([MALFORMED, good], None)
    assert [u.update_id for u in updates] == [500, 501]
    assert updates[0].effective_message is None and updates[0].effective_user is None
    assert updates[1].effective_message is not None
    assert updates[1].effective_message.text == "my secret words"
    logged = caplog.text
    assert "500" in logged
    assert "a string" not in logged and "yesterday" not in logged  # no content in the logs


def test_an_item_without_an_id_is_dropped() -> None:
    assert parse_updates([{"message": "junk"}, "junk"], None) == ()  # type: ignore[list-item]


async def test_polling_moves_past_an_unparseable_update(bot: RunningBot) -> None:  # noqa: F811
    api = bot.api
    api.inject_raw(MALFORMED)
    api.inject_message(PERSON, "/help")
    sent = await api.wait_for_sent(PERSON, 1, timeout=15)
    assert "Here's what I can do" in str(sent[0].text)
    # The malformed update is behind the offset: it is not fetched again and again.
    await api.wait_until_idle(quiet=0.5, timeout=10)
    api.inject_message(PERSON, "/help")
    await api.wait_for_sent(PERSON, 2, timeout=15)
