"""The real bot over real HTTP against the Bot API fake: /start -> consent -> free text."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text

from bot.config import Settings
from bot.db.models import Base
from bot.telegram.app import create_application, run_polling
from bot.wiring import Runtime, build_runtime
from nlu.pipeline import NluPipeline
from tests.botapi_fake import FakeBotAPI, SentItem
from tests.conftest import TEST_SECRET

PERSON = 7391846250  # distinctive, so a leak of it into any table is findable


@dataclass
class RunningBot:
    """The bot polling the fake, and the fake."""

    api: FakeBotAPI
    runtime: Runtime


@pytest.fixture
async def bot(db_url: str, nlu_pipeline: NluPipeline) -> AsyncIterator[RunningBot]:
    """`kindred run`'s Application, polling a fresh fake Bot API over HTTP."""
    # A bot of its own per test: update ids restart at 1 in every fake, and the database
    # (shared by the session's tests) remembers handled update ids per bot.
    token = f"{secrets.randbelow(10**9) + 1}:TEST-token"
    async with FakeBotAPI(token=token) as api:
        settings = Settings(
            database_url=db_url,
            secret_key=TEST_SECRET.decode(),
            telegram_bot_token=token,
            telegram_api_base=api.base_url,
        )
        runtime = await build_runtime(settings, migrate=False, nlu=nlu_pipeline)
        application = create_application(settings, runtime.service)
        stop = asyncio.Event()
        polling = asyncio.create_task(run_polling(application, stop, poll_timeout=1))
        try:
            yield RunningBot(api, runtime)
        finally:
            stop.set()
            await polling
            await runtime.aclose()


async def reply_to(api: FakeBotAPI, count: int) -> str:
    """The text of the `count`-th message the bot sent to the person."""
    sent = await api.wait_for_sent(PERSON, count, timeout=15)
    return str(sent[count - 1].text)


async def test_start_consent_then_free_text(bot: RunningBot) -> None:
    api = bot.api
    api.inject_message(PERSON, "/start")
    intro = (await api.wait_for_sent(PERSON, 1, timeout=15))[0]
    assert "automated assistant" in str(intro.text)
    buttons = api.buttons(intro)
    labels = [label for row in buttons for label, _ in row]
    assert labels[0] == "Yes, save my check-ins"
    yes_payload = buttons[0][0][1]

    api.inject_callback(PERSON, intro.message_id, yes_payload)
    assert "only those" in await reply_to(api, 2)

    api.inject_message(PERSON, "i really want a drink right now, its bad")
    assert "How strong is the craving" in await reply_to(api, 3)
    assert not [e for e in api.errors if e.get("method") != "getUpdates"]

    # Privacy: no table holds the Telegram id, the chat id or the message text in plain form.
    leaks = await find_in_tables(bot.runtime, [str(PERSON), "i really want a drink"])
    assert leaks == []


async def find_in_tables(runtime: Runtime, needles: list[str]) -> list[str]:
    """Every (table, needle) where a needle appears in the raw content of any row."""
    found = []
    async with runtime.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            blob = "\n".join(repr(tuple(row)) for row in rows)
            found += [f"{table.name}: {n}" for n in needles if n in blob]
        await conn.execute(text("SELECT 1"))
    return found


async def test_an_update_delivered_twice_is_answered_once(bot: RunningBot) -> None:
    api = bot.api
    update = api.inject_message(PERSON, "/help")
    await api.wait_for_sent(PERSON, 1, timeout=15)
    api.inject_raw(update)
    api.inject_message(PERSON, "/start")
    await api.wait_for_sent(PERSON, 2, timeout=15)
    await api.wait_until_idle(quiet=0.5, timeout=10)
    texts = [str(s.text) for s in api.sent(PERSON)]
    assert len(texts) == 2
    assert "Here's what I can do" in texts[0] and "automated assistant" in texts[1]


async def test_one_persons_messages_are_answered_in_order(bot: RunningBot) -> None:
    api = bot.api
    for command in ("/help", "/start", "/help", "/start"):
        api.inject_message(PERSON, command)
    sent = await api.wait_for_sent(PERSON, 4, timeout=15)
    kinds = ["help" if "Here's what I can do" in str(s.text) else "start" for s in sent]
    assert kinds == ["help", "start", "help", "start"]


async def test_bad_input_gets_a_reply_or_is_ignored_and_nothing_crashes(bot: RunningBot) -> None:
    api = bot.api
    api.inject_message(PERSON, "/start")
    intro = (await api.wait_for_sent(PERSON, 1, timeout=15))[0]
    chat = {"id": PERSON, "type": "private", "first_name": "Test"}
    sender = {"id": PERSON, "is_bot": False, "first_name": "Test", "language_code": "en"}
    api.inject_message(PERSON, "x" * 5000)
    api.inject_update({"message": {"chat": chat, "from": sender, "sticker": _sticker()}})
    api.inject_update({"message": {"chat": chat, "from": sender, "photo": [_photo()]}})
    api.inject_update({"message": {"chat": chat, "from": sender, "voice": _voice()}})
    api.inject_update(
        {"edited_message": {"chat": chat, "from": sender, "text": "edited", "edit_date": 1}}
    )
    api.inject_callback(PERSON, intro.message_id, "onb:yes\u0000' OR 1=1 --")
    api.inject_callback(PERSON, intro.message_id, "country:Atlantis")
    api.inject_message(PERSON, "/help")
    sent = await api.wait_for_sent(PERSON, 8, timeout=20)
    texts = [str(s.text) for s in sent]
    assert sum("only read text messages" in t for t in texts) == 3
    assert sum("no longer active" in t for t in texts) == 2
    assert "Here's what I can do" in texts[-1]
    assert not [e for e in api.errors if e.get("method") != "getUpdates"]


def _sticker() -> dict[str, object]:
    return {
        "file_id": "stk",
        "file_unique_id": "stk-u",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }


def _photo() -> dict[str, object]:
    return {"file_id": "ph", "file_unique_id": "ph-u", "width": 90, "height": 90}


def _voice() -> dict[str, object]:
    return {"file_id": "vc", "file_unique_id": "vc-u", "duration": 3}


async def onboarded(api: FakeBotAPI) -> tuple[int, int]:
    """A new person says /start and no to storing check-ins: (their id, messages so far)."""
    person = PERSON + 1 + secrets.randbelow(10**6)  # the database is shared by the session
    api.inject_message(person, "/start")
    intro = (await api.wait_for_sent(person, 1, timeout=15))[0]
    no_payload = api.buttons(intro)[1][0][1]
    api.inject_callback(person, intro.message_id, no_payload)
    await api.wait_for_sent(person, 2, timeout=15)
    return person, 2


async def test_a_crisis_over_telegram_gets_local_numbers_and_no_menu(bot: RunningBot) -> None:
    api = bot.api
    person, count = await onboarded(api)
    api.inject_message(person, "i cant do this anymore, i want to end my life tonight")
    crisis = (await api.wait_for_sent(person, count + 1, timeout=15))[-1]
    assert "glad you told me" in str(crisis.text)
    assert "emergency number" in str(crisis.text)
    labels = [label for row in api.buttons(crisis) for label, _ in row]
    assert "United Kingdom" in labels and "I'm safe right now" in labels
    uk = next(
        data for row in api.buttons(crisis) for label, data in row if label == "United Kingdom"
    )
    api.inject_callback(person, crisis.message_id, str(uk))
    local = (await api.wait_for_sent(person, count + 2, timeout=15))[-1]
    assert "999" in str(local.text) and "116 123" in str(local.text)


async def test_a_referral_over_telegram_asks_the_country_once(bot: RunningBot) -> None:
    api = bot.api
    person, count = await onboarded(api)
    api.inject_message(person, "where can i find an AA meeting")
    asked = (await api.wait_for_sent(person, count + 1, timeout=15))[-1]
    assert "Which country" in str(asked.text)
    us = next(data for row in api.buttons(asked) for label, data in row if label == "United States")
    api.inject_callback(person, asked.message_id, str(us))
    listed = (await api.wait_for_sent(person, count + 2, timeout=15))[-1]
    assert "aa.org" in str(listed.text).lower()
    api.inject_message(person, "i need rehab")
    again = (await api.wait_for_sent(person, count + 3, timeout=15))[-1]
    assert "Which country" not in str(again.text)
    assert "findtreatment.gov" in str(again.text).lower()


async def test_a_craving_check_in_over_telegram_from_level_to_check_back(bot: RunningBot) -> None:
    api = bot.api
    person, count = await onboarded(api)

    async def press(label: str) -> SentItem:
        nonlocal count
        last = api.sent(person)[-1]
        data = next(d for row in api.buttons(last) for lbl, d in row if lbl.startswith(label))
        api.inject_callback(person, last.message_id, str(data))
        count += 1
        return (await api.wait_for_sent(person, count, timeout=15))[-1]

    api.inject_message(person, "i really want to use tonight")
    count += 1
    asked = (await api.wait_for_sent(person, count, timeout=15))[-1]
    assert "How strong is the craving" in str(asked.text)
    assert "What is the craving for?" in str((await press("8")).text)
    assert "What might be feeding it?" in str((await press("Opioids")).text)
    await press("Tired")
    coping = await press("Done")
    assert "basics first" in str(coping.text) and "really hard" in str(coping.text)
    assert "check back in 15 minutes" in str((await press("Check on me in 15")).text)
