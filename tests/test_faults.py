"""Fault injection: the real bot over HTTP while Telegram, the database or Rasa misbehave.

Every test runs `kindred run`'s Application (create_application over build_runtime) against the
Bot API fake and checks three things: the person gets a clear reply (or a deliberate silence),
nothing is sent twice, and nothing escapes as an unhandled exception (PTB's error handler and
every log record at ERROR are watched).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select, text
from telegram import Update
from telegram.ext import ContextTypes

from bot.config import Settings
from bot.db.engine import create_engine
from bot.db.models import FollowUp
from bot.identity import Identity
from bot.telegram.app import create_application, run_polling
from bot.wiring import Runtime, build_runtime
from flows.copy import text as copy_text
from nlu.pipeline import NluPipeline
from nlu.rasa_client import RasaInterpreter
from tests.botapi_fake import FakeBotAPI, SentItem
from tests.conftest import POSTGRES_ADMIN_URL, TEST_SECRET

pytestmark = pytest.mark.faults

REPLY_TIMEOUT = 20.0
APOLOGY = copy_text("en", "fallback.trouble").split("\n")[0]


@dataclass
class RunningBot:
    """`kindred run`'s Application polling a fake Bot API, restartable, errors caught."""

    api: FakeBotAPI
    settings: Settings
    nlu: NluPipeline
    errors: list[tuple[int | None, str]] = field(default_factory=list)
    runtime: Runtime | None = None
    _stop: asyncio.Event | None = None
    _polling: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Build the runtime and the Application, and start polling."""
        self.runtime = await build_runtime(self.settings, migrate=False, nlu=self.nlu)
        application = create_application(self.settings, self.runtime.service)
        application.add_error_handler(self._record_error)
        self._stop = asyncio.Event()
        self._polling = asyncio.create_task(run_polling(application, self._stop, poll_timeout=1))

    async def stop(self) -> None:
        """Stop polling (in-flight updates finish) and release the database."""
        if self._stop is not None and self._polling is not None:
            self._stop.set()
            await self._polling
        if self.runtime is not None:
            await self.runtime.aclose()
        self._stop = self._polling = self.runtime = None

    async def restart(self) -> None:
        """Stop and start again: nothing but the database carries over."""
        await self.stop()
        await self.start()

    async def _record_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        uid = update.update_id if isinstance(update, Update) else None
        self.errors.append((uid, f"{type(context.error).__name__}: {context.error}"))

    def pseudonym(self, user_id: int) -> str:
        """The person's key in the database."""
        return Identity(TEST_SECRET).pseudonym("telegram", str(user_id))


@pytest.fixture
async def bot(db_url: str, nlu_pipeline: NluPipeline) -> AsyncIterator[RunningBot]:
    """A running bot on its own fake (its own token: update ids restart at 1 in each fake)."""
    async with _bot(db_url, nlu_pipeline) as running:
        yield running


@pytest.fixture
async def sqlite_bot(sqlite_url: str, nlu_pipeline: NluPipeline) -> AsyncIterator[RunningBot]:
    """The same on SQLite only, for faults that never reach the database."""
    async with _bot(sqlite_url, nlu_pipeline) as running:
        yield running


@contextlib.asynccontextmanager
async def _bot(db_url: str, nlu: NluPipeline) -> AsyncIterator[RunningBot]:
    token = f"{secrets.randbelow(10**9) + 1}:FAULTS"
    async with FakeBotAPI(token=token) as api:
        settings = Settings(
            database_url=db_url,
            secret_key=SecretStr(TEST_SECRET.decode()),
            telegram_bot_token=SecretStr(token),
            telegram_api_base=api.base_url,
            rasa_url=None,
        )
        running = RunningBot(api, settings, nlu)
        await running.start()
        try:
            yield running
        finally:
            await running.stop()


@pytest.fixture
def error_logs(caplog: pytest.LogCaptureFixture) -> Callable[..., list[str]]:
    """Log records at ERROR or above, except those a test expects."""

    def unexpected(*allowed: str) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.levelno >= logging.ERROR and not any(a in r.getMessage() for a in allowed)
        ]

    return unexpected


def person() -> int:
    """A Telegram user id no other test uses."""
    return 6_000_000_000 + secrets.randbelow(10**9)


def texts(api: FakeBotAPI, chat_id: int) -> list[str]:
    """What the person saw, in order."""
    return [str(item.text) for item in api.sent(chat_id)]


def api_errors(api: FakeBotAPI) -> list[str]:
    """Bot API calls the fake refused, other than long polls and the failures a test injected."""
    return [
        f"{call.method} {call.status} {call.description}"
        for call in api.errors
        if call.method != "getUpdates"
        and call.description
        and "injected" not in call.description
        and call.status < 429
    ]


async def say(api: FakeBotAPI, user: int, message: str, replies: int = 1) -> list[SentItem]:
    """Send a message and wait until the person has `replies` more messages from the bot."""
    before = len(api.sent(user))
    api.inject_message(user, message)
    return (await api.wait_for_sent(user, before + replies, timeout=REPLY_TIMEOUT))[before:]


async def press(api: FakeBotAPI, user: int, payload: str, replies: int = 1) -> list[SentItem]:
    """Press a button with this payload on the bot's last message."""
    sent = api.sent(user)
    message_id = sent[-1].message_id if sent else 1
    api.inject_callback(user, int(message_id or 1), payload)
    return (await api.wait_for_sent(user, len(sent) + replies, timeout=REPLY_TIMEOUT))[len(sent) :]


async def onboard(api: FakeBotAPI, user: int) -> None:
    """/start and consent, as a person does first."""
    await say(api, user, "/start")
    await press(api, user, "onb:yes")


# --- Telegram misbehaving -------------------------------------------------------------------


async def test_429_burst_is_retried_and_delivered_once(
    sqlite_bot: RunningBot, error_logs: Callable[..., list[str]]
) -> None:
    bot = sqlite_bot
    api, user = bot.api, person()
    api.fail_next("sendMessage", 429, times=2, retry_after=1)
    await say(api, user, "/help")
    await api.wait_until_idle(quiet=0.5, timeout=REPLY_TIMEOUT)
    assert len(texts(api, user)) == 1 and "Here's what I can do" in texts(api, user)[0]
    statuses = [c.status for c in api.calls if c.method == "sendMessage"]
    assert statuses == [429, 429, 200]
    assert bot.errors == [] and error_logs() == []


async def test_5xx_burst_is_retried_and_delivered_once(
    sqlite_bot: RunningBot, error_logs: Callable[..., list[str]]
) -> None:
    bot = sqlite_bot
    api, user = bot.api, person()
    api.fail_next("sendMessage", 502, times=1)
    api.fail_next("sendMessage", 500, times=1)
    api.fail_next("answerCallbackQuery", 503, times=1)
    await say(api, user, "/start")
    await press(api, user, "onb:yes")  # its answerCallbackQuery fails: the reply still comes
    await api.wait_until_idle(quiet=0.5, timeout=REPLY_TIMEOUT)
    seen = texts(api, user)
    assert len(seen) == 2, seen
    assert "automated assistant" in seen[0] and "only those" in seen[1]
    statuses = [c.status for c in api.calls if c.method == "sendMessage"]
    assert statuses == [502, 500, 200, 200]
    assert bot.errors == [] and error_logs() == []


async def test_same_update_twice_is_answered_once(
    bot: RunningBot, error_logs: Callable[..., list[str]]
) -> None:
    """On both databases: on PostgreSQL the redelivery can land in a shared transaction."""
    api, user = bot.api, person()
    first = api.inject_message(user, "/help")
    await api.wait_for_sent(user, 1, timeout=REPLY_TIMEOUT)
    api.inject_raw(first)  # redelivered later, as after a lost offset confirmation
    press_update = api.inject_callback(user, 1, "onb:no")
    api.inject_raw(press_update)  # and twice in one batch
    api.inject_message(user, "/start")
    await api.wait_for_sent(user, 3, timeout=REPLY_TIMEOUT)
    await api.wait_until_idle(quiet=0.5, timeout=REPLY_TIMEOUT)
    seen = texts(api, user)
    assert len(seen) == 3, seen
    assert "Here's what I can do" in seen[0] and "automated assistant" in seen[2]
    assert bot.errors == [] and error_logs() == []


# --- the bot restarted ----------------------------------------------------------------------


async def test_restart_mid_conversation_keeps_state_and_followups(
    bot: RunningBot, error_logs: Callable[..., list[str]]
) -> None:
    api, user = bot.api, person()
    await onboard(api, user)
    await say(api, user, "i really want a drink right now, its bad")
    await press(api, user, "crv:lvl:7")
    await press(api, user, "crv:trg:done")
    await press(api, user, "crv:back:15")  # a follow-up in 15 minutes
    await say(api, user, "/checkin")  # mid-flow: the mood question is open

    await bot.restart()

    (answer,) = await press(api, user, "chk:mood:3")
    assert "Any cravings today" in str(answer.text)  # the check-in went on where it was
    async with _engine(bot.settings.database_url) as engine, engine.connect() as conn:
        kinds = (
            await conn.execute(
                select(FollowUp.kind).where(
                    FollowUp.user_id == bot.pseudonym(user), FollowUp.status == "pending"
                )
            )
        ).scalars()
        assert list(kinds), "the follow-up did not survive the restart"
    assert bot.errors == [] and error_logs() == []


@contextlib.asynccontextmanager
async def _engine(url: str) -> AsyncIterator[Any]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


# --- PostgreSQL unreachable -------------------------------------------------------------------


async def _admin(statement: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def database_down(url: str) -> AsyncIterator[None]:
    """Refuse new connections to the database and cut the open ones, as a restart would."""
    name = url.rsplit("/", 1)[-1]
    await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        yield
    finally:
        await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@pytest.mark.postgres
async def test_postgres_outage_apologises_then_recovers(
    postgres_url: str, nlu_pipeline: NluPipeline, error_logs: Callable[..., list[str]]
) -> None:
    async with _bot(postgres_url, nlu_pipeline) as running:
        api, user = running.api, person()
        await onboard(api, user)
        await say(api, user, "/checkin")  # the mood question is open when the database goes
        async with database_down(postgres_url):
            (apology,) = await say(api, user, "hello")
            assert APOLOGY in str(apology.text)
            # A crisis is still answered in full without the database.
            (crisis,) = await say(api, user, "i want to kill myself")
            assert "emergency" in str(crisis.text).lower()
        # Recovered: the open question still works, nothing was lost or doubled.
        (answer,) = await press(api, user, "chk:mood:3")
        assert "Any cravings today" in str(answer.text)
        await api.wait_until_idle(quiet=0.5, timeout=REPLY_TIMEOUT)
        assert len(texts(api, user)) == 6
        assert running.errors == []
        assert error_logs("storage unavailable") == []


# --- Rasa stopped -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fake_rasa(nlu: NluPipeline) -> AsyncIterator[tuple[str, list[str], web.AppRunner]]:
    """A Rasa /model/parse server answering with the embedded model; yields url, calls, runner."""
    calls: list[str] = []

    async def parse(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(str(body.get("text", "")))
        understood = await nlu.backend.parse(str(body.get("text", "")))
        return web.json_response(understood.to_json())

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", calls, runner
    finally:
        await runner.cleanup()


async def test_rasa_stopped_mid_run_embedded_answers(
    sqlite_url: str, nlu_pipeline: NluPipeline, error_logs: Callable[..., list[str]]
) -> None:
    async with fake_rasa(nlu_pipeline) as (url, calls, rasa):
        rasa_nlu = NluPipeline(
            RasaInterpreter(url, None, fallback=nlu_pipeline.backend, timeout=0.5),
            nlu_pipeline.safety,
            "en",
        )
        async with _bot(sqlite_url, rasa_nlu) as running:
            api, user = running.api, person()
            await onboard(api, user)
            (first,) = await say(api, user, "i really want a drink right now, its bad")
            assert calls, "Rasa was not asked"
            assert "How strong is the craving" in str(first.text)
            await rasa.cleanup()  # Rasa goes away mid-conversation
            await press(api, user, "crv:lvl:6")
            (second,) = await say(api, user, "thanks")
            assert "welcome" in str(second.text).lower()
            (third,) = await say(api, user, "I slipped last night and had a few beers")
            assert "slip" in str(third.text).lower()
            await api.wait_until_idle(quiet=0.5, timeout=REPLY_TIMEOUT)
            assert len(texts(api, user)) == 6  # nothing lost
            assert running.errors == [] and error_logs() == []


# --- bad input --------------------------------------------------------------------------------


class Expect(Enum):
    """What a case must produce."""

    REPLY = "reply"  # at least one message back to that chat, none refused by Telegram
    IGNORE = "ignore"  # nothing sent to anyone for it, deliberately


@dataclass(frozen=True)
class Case:
    """One bad input: how to inject it (given the chat id to use) and what must happen."""

    name: str
    expect: Expect
    inject: Callable[[FakeBotAPI, int], Any]
    contains: str | None = None
    private: bool = True  # the reply, if any, goes to the person's private chat


def _text(value: str) -> Callable[[FakeBotAPI, int], Any]:
    return lambda api, chat: api.inject_message(chat, value)


def _press(data: str) -> Callable[[FakeBotAPI, int], Any]:
    return lambda api, chat: api.inject_callback(chat, 1, data)


def _private(kind: str, body: dict[str, Any]) -> Callable[[FakeBotAPI, int], Any]:
    def inject(api: FakeBotAPI, chat: int) -> Any:
        sender = {"id": chat, "is_bot": False, "first_name": "T", "language_code": "en"}
        where = {"id": chat, "type": "private", "first_name": "T"}
        return api.inject_update({kind: {"chat": where, "from": sender, **body}})

    return inject


def _group(kind: str, body: dict[str, Any], chat_type: str = "supergroup") -> Any:
    def inject(api: FakeBotAPI, chat: int) -> Any:
        sender = {"id": chat, "is_bot": False, "first_name": "T"}
        where: dict[str, Any] = {"id": -chat, "type": chat_type, "title": "G"}
        payload: dict[str, Any] = {"chat": where, **body}
        if chat_type != "channel":
            payload["from"] = sender
        return api.inject_update({kind: payload})

    return inject


def _update(kind: str, body: Callable[[int], dict[str, Any]]) -> Callable[[FakeBotAPI, int], Any]:
    return lambda api, chat: api.inject_update({kind: body(chat)})


def _raw(key: str, body: dict[str, Any]) -> Callable[[FakeBotAPI, int], Any]:
    # An update type this PTB does not know yet, exactly as Telegram might send it one day.
    return lambda api, chat: api.inject_raw({"update_id": 10**7 + chat % 10**6, key: body})


def _user(chat: int) -> dict[str, Any]:
    return {"id": chat, "is_bot": False, "first_name": "T", "language_code": "en"}


FILE = {"file_id": "f1", "file_unique_id": "fu1"}
MEDIA: dict[str, dict[str, Any]] = {
    "sticker": {
        "sticker": {
            **FILE,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
    },
    "photo": {"photo": [{**FILE, "width": 90, "height": 90}]},
    "photo with html caption": {
        "photo": [{**FILE, "width": 90, "height": 90}],
        "caption": "<b>unclosed & <script>",
    },
    "voice": {"voice": {**FILE, "duration": 3}},
    "audio": {"audio": {**FILE, "duration": 3}},
    "video": {"video": {**FILE, "width": 1, "height": 1, "duration": 1}},
    "video note": {"video_note": {**FILE, "length": 1, "duration": 1}},
    "animation": {"animation": {**FILE, "width": 1, "height": 1, "duration": 1}},
    "document": {"document": {**FILE, "file_name": "../../etc/passwd"}},
    "location": {"location": {"latitude": 51.5, "longitude": -0.12}},
    "contact": {"contact": {"phone_number": "+10000000000", "first_name": "X"}},
    "dice": {"dice": {"emoji": "🎲", "value": 3}},
    "venue": {
        "venue": {
            "location": {"latitude": 1.0, "longitude": 1.0},
            "title": "<b>t</b>",
            "address": "a",
        }
    },
    "poll": {
        "poll": {
            "id": "p1",
            "question": "q?",
            "options": [
                {"text": "a", "voter_count": 0, "persistent_id": "a1"},
                {"text": "b", "voter_count": 0, "persistent_id": "b1"},
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        }
    },
}

TEXTS: dict[str, str] = {
    "empty": "",
    "space": " ",
    "newlines": "\n\n\n",
    "tab": "\t",
    "4096 chars": "x" * 4096,
    "5000 chars": "I keep thinking about it. " * 200,
    "20000 chars": "a" * 20000,
    "one long word": "w" * 9000,
    "nul": "\x00",
    "control chars": "\x01\x02\x03\x04\x05\x06\x07\x08",
    "nul inside": "hello\x00world",
    "escape codes": "\x1b[31mred\x1b[0m \x1b]0;title\x07",
    "delete char": "\x7f\x7f",
    "zero width": "\u200b\u200c\u200d",
    "bom": "\ufeffhello",
    "lone surrogate": "\ud800 hi",
    "line separators": "a\u2028b\u2029c",
    "carriage returns": "a\r\nb\rc",
    "rtl override": "\u202eevil.exe\u202c",
    "arabic": "مرحبا، أحتاج مساعدة الليلة",
    "hebrew": "שלום, אני צריך עזרה",
    "persian": "سلام، حالم خوب نیست",
    "mixed rtl": "hello مرحبا world",
    "rtl embedding": "\u202bשלום\u202c ok",
    "emoji only": "😀",
    "emoji beers": "🍺🍺🍺",
    "emoji heart": "❤️",
    "emoji skin tone": "👍🏽",
    "emoji zwj family": "👨‍👩‍👧‍👦",
    "emoji flag": "🇺🇸🇬🇧",
    "emoji pills": "💊💊",
    "emoji hundred": "💯" * 500,
    "html bold": "<b>x</b>",
    "html script": "<script>alert(1)</script>",
    "html closing": "</b></i>",
    "html link": "<a href='javascript:alert(1)'>x</a>",
    "html entities": "&lt; &amp; &#0; &#x110000; &bogus;",
    "html unclosed": "<i><b>unclosed",
    "html spoiler": "<tg-spoiler>x",
    "angle brackets": "<<<>>> a < b > c & d",
    "markdown": "*_[`",
    "markdown bold": "**bold** __under__",
    "markdown link": "[link](http://example.com)",
    "markdown code": "```code``` `x`",
    "markdown escaped": "\\*escaped\\_",
    "markdown v2": "_*~||>#+-=|{}.!",
    "sql": "'; DROP TABLE users; --",
    "format strings": "%s %d %(x)s {0} {} {x!r}",
    "jndi": "${jndi:ldap://x/a}",
    "template": "{{7*7}} {% raw %}",
    "backslashes": "\\\\\\",
    "json": '{"update_id": 1, "text": "x"}',
    "null word": "null",
    "number": "9" * 100,
    "negative": "-5",
    "eleven": "11",
    "zero": "0",
    "float": "7.5",
    "combining": "e\u0301" * 500,
    "zalgo": "h\u0336\u0334\u0335e\u0337\u0338l\u0321\u0322l\u0327o\u0328",
    "fullwidth": "ｈｅｌｌｏ",
    "math bold": "𝐡𝐞𝐥𝐥𝐨",
    "ligature": "ﬁne ﬂow",
    "spanish": "hola, necesito ayuda",
    "russian": "привет, мне плохо",
    "chinese": "我想喝酒",
    "japanese": "こんにちは",
    "slash": "/",
    "double slash": "//",
    "slash space": "/ start",
    "command args": "/start " + "x" * 5000,
    "command upper": "/START",
    "command unknown": "/definitelynotacommand",
    "command for us": "/help@kindred_test_bot",
    "command for another bot": "/help@someone_elses_bot",
    "command injection": "/start <b>x</b>",
    "command delete": "/delete",
    "command checkin": "/checkin",
    "command progress": "/progress",
    "command mydata": "/mydata",
}

FORGED_BUTTONS: dict[str, str] = {
    "empty data": "",
    "64 bytes": "x" * 64,
    "oversized data": "x" * 65,
    "huge data": "y" * 10000,
    "sql in payload": "onb:yes\x00' OR 1=1 --",
    "level 999": "crv:lvl:999",
    "level negative": "crv:lvl:-1",
    "level word": "crv:lvl:abc",
    "mood 9": "chk:mood:9",
    "unknown country": "country:Atlantis",
    "empty country": "country:",
    "colon": ":",
    "colons": "::::",
    "html payload": "<b>x</b>",
    "emoji payload": "🙂",
    "path payload": "../../etc/passwd",
    "json payload": '{"a": 1}',
    "unknown card": "cop:card:nonexistent",
    "consent without intro": "onb:yes",
    "stale craving button": "crv:ok",
    "stale checkin button": "chk:done",
    "desk claim forged": "desk:claim:1",
    "percent": "%00%ff",
}


def corpus() -> list[Case]:
    """At least 100 bad inputs, each with the outcome it must have."""
    cases = [Case(f"text: {name}", Expect.REPLY, _text(value)) for name, value in TEXTS.items()]
    cases += [
        Case(f"button: {name}", Expect.REPLY, _press(data)) for name, data in FORGED_BUTTONS.items()
    ]
    unsupported = copy_text("en", "fallback.unsupported").split(",")[0]
    cases += [
        Case(f"media: {name}", Expect.REPLY, _private("message", body), unsupported)
        for name, body in MEDIA.items()
    ]
    cases += [
        Case(
            "text: forwarded",
            Expect.REPLY,
            _private(
                "message",
                {
                    "text": "forwarded <b>",
                    "forward_origin": {"type": "hidden_user", "sender_user_name": "x", "date": 1},
                },
            ),
        ),
        Case(
            "text: reply to unknown message",
            Expect.REPLY,
            _private(
                "message",
                {
                    "text": "about that",
                    "reply_to_message": {
                        "message_id": 999999,
                        "date": 1,
                        "chat": {"id": 1, "type": "private", "first_name": "x"},
                    },
                },
            ),
        ),
        # Deliberately ignored: nothing a person said to us in private.
        Case("private: no content", Expect.IGNORE, _private("message", {})),
        Case(
            "private: pinned service message",
            Expect.IGNORE,
            _private(
                "message",
                {
                    "pinned_message": {
                        "message_id": 1,
                        "date": 0,
                        "chat": {"id": 1, "type": "private", "first_name": "x"},
                    }
                },
            ),
        ),
        Case(
            "private: from another bot",
            Expect.IGNORE,
            lambda api, chat: api.inject_update(
                {
                    "message": {
                        "chat": {"id": chat, "type": "private", "first_name": "B"},
                        "from": {"id": chat, "is_bot": True, "first_name": "B"},
                        "text": "/start",
                    }
                }
            ),
        ),
        Case("edited: text", Expect.IGNORE, _private("edited_message", {"text": "edited"})),
        Case(
            "edited: html", Expect.IGNORE, _private("edited_message", {"text": "<b>x</b><script>"})
        ),
        Case("edited: to a sticker", Expect.IGNORE, _private("edited_message", MEDIA["photo"])),
        Case("group: text", Expect.IGNORE, _group("message", {"text": "hello"}), private=False),
        Case("group: start", Expect.IGNORE, _group("message", {"text": "/start"}), private=False),
        Case(
            "group: start for us",
            Expect.IGNORE,
            _group("message", {"text": "/start@kindred_test_bot"}),
            private=False,
        ),
        Case(
            "group: crisis words",
            Expect.IGNORE,
            _group("message", {"text": "i want to kill myself"}, "group"),
            private=False,
        ),
        Case("group: photo", Expect.IGNORE, _group("message", MEDIA["photo"]), private=False),
        Case(
            "group: edited", Expect.IGNORE, _group("edited_message", {"text": "x"}), private=False
        ),
        Case(
            "channel: post",
            Expect.IGNORE,
            _group("channel_post", {"text": "/start"}, "channel"),
            private=False,
        ),
        Case(
            "channel: edited post",
            Expect.IGNORE,
            _group("edited_channel_post", {"text": "x"}, "channel"),
            private=False,
        ),
        Case(
            "group: button press",
            Expect.IGNORE,
            lambda api, chat: api.inject_update(
                {
                    "callback_query": {
                        "from": _user(chat),
                        "data": "onb:yes",
                        "message": {
                            "message_id": 1,
                            "date": 1,
                            "chat": {"id": -chat, "type": "supergroup", "title": "G"},
                        },
                    }
                }
            ),
            private=False,
        ),
        Case(
            "inline message button press",
            Expect.IGNORE,
            _update(
                "callback_query",
                lambda chat: {"from": _user(chat), "inline_message_id": "i1", "data": "onb:yes"},
            ),
        ),
        Case(
            "game button press",
            Expect.IGNORE,
            _update(
                "callback_query",
                lambda chat: {
                    "from": _user(chat),
                    "inline_message_id": "i2",
                    "game_short_name": "g",
                },
            ),
        ),
        Case(
            "inline query",
            Expect.IGNORE,
            _update(
                "inline_query",
                lambda chat: {"id": "q1", "from": _user(chat), "query": "<b>", "offset": ""},
            ),
        ),
        Case(
            "chosen inline result",
            Expect.IGNORE,
            _update(
                "chosen_inline_result",
                lambda chat: {"result_id": "r", "from": _user(chat), "query": "x"},
            ),
        ),
        Case(
            "shipping query",
            Expect.IGNORE,
            _update(
                "shipping_query",
                lambda chat: {
                    "id": "s",
                    "from": _user(chat),
                    "invoice_payload": "p",
                    "shipping_address": {
                        "country_code": "GB",
                        "state": "",
                        "city": "c",
                        "street_line1": "s",
                        "street_line2": "",
                        "post_code": "p",
                    },
                },
            ),
        ),
        Case(
            "pre-checkout query",
            Expect.IGNORE,
            _update(
                "pre_checkout_query",
                lambda chat: {
                    "id": "c",
                    "from": _user(chat),
                    "currency": "XTR",
                    "total_amount": 1,
                    "invoice_payload": "p",
                },
            ),
        ),
        Case(
            "poll answer",
            Expect.IGNORE,
            _update(
                "poll_answer",
                lambda chat: {
                    "poll_id": "p",
                    "user": _user(chat),
                    "option_ids": [0],
                    "option_persistent_ids": ["a1"],
                },
            ),
        ),
        Case(
            "poll update",
            Expect.IGNORE,
            _update("poll", lambda chat: MEDIA["poll"]["poll"]),
        ),
        Case(
            "message reaction",
            Expect.IGNORE,
            _update(
                "message_reaction",
                lambda chat: {
                    "chat": {"id": chat, "type": "private", "first_name": "T"},
                    "message_id": 1,
                    "user": _user(chat),
                    "date": 1,
                    "old_reaction": [],
                    "new_reaction": [{"type": "emoji", "emoji": "👍"}],
                },
            ),
        ),
        Case(
            "bot blocked (my_chat_member)",
            Expect.IGNORE,
            _update(
                "my_chat_member",
                lambda chat: {
                    "chat": {"id": chat, "type": "private", "first_name": "T"},
                    "from": _user(chat),
                    "date": 1,
                    "old_chat_member": {
                        "status": "member",
                        "user": {"id": 1, "is_bot": True, "first_name": "K"},
                    },
                    "new_chat_member": {
                        "status": "kicked",
                        "until_date": 0,
                        "user": {"id": 1, "is_bot": True, "first_name": "K"},
                    },
                },
            ),
        ),
        Case(
            "join request",
            Expect.IGNORE,
            _update(
                "chat_join_request",
                lambda chat: {
                    "chat": {"id": -chat, "type": "supergroup", "title": "G"},
                    "from": _user(chat),
                    "user_chat_id": chat,
                    "date": 1,
                },
            ),
            private=False,
        ),
        Case("unknown update type", Expect.IGNORE, _raw("future_kind_of_update", {"x": 1})),
        Case(
            "unknown update with a user",
            Expect.IGNORE,
            _raw("another_new_kind", {"from": {"id": 5, "is_bot": False, "first_name": "x"}}),
        ),
        # Updates this PTB cannot parse at all: skipped, and the rest of their batch answered.
        Case(
            "unparseable message",
            Expect.IGNORE,
            _raw("message", {"message_id": "one", "date": "today", "chat": "not an object"}),
        ),
        Case(
            "unparseable callback",
            Expect.IGNORE,
            _raw("callback_query", {"id": 7, "from": "someone", "data": ["a", "list"]}),
        ),
        Case("unparseable edited message", Expect.IGNORE, _raw("edited_message", {"chat": []})),
    ]
    return cases


@dataclass
class Tally:
    """The corpus' counts, printed at the end."""

    tried: int = 0
    survived: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)


async def test_bad_input_corpus(
    bot: RunningBot, error_logs: Callable[..., list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    api = bot.api
    cases = corpus()
    assert len(cases) >= 100
    base = person()
    chats = {case.name: base + index for index, case in enumerate(cases)}
    update_ids: dict[int, str] = {}
    for case in cases:
        injected = case.inject(api, chats[case.name])
        if not case.name.startswith("unparseable"):
            Update.de_json(injected, None)  # a case meant to be readable must be
        update_ids[int(injected["update_id"])] = case.name
    await api.wait_until_idle(quiet=1.5, timeout=120)

    tally = Tally(tried=len(cases))
    everything = api.sent()
    crashed = {uid for uid, _ in bot.errors if uid is not None}
    for case in cases:
        chat = chats[case.name]
        own = [s for s in everything if s.chat_id in (chat, -chat)]
        refused = [
            e
            for e in api.errors
            if e.method != "getUpdates" and e.params.get("chat_id") in (chat, -chat)
        ]
        problem = None
        if any(update_ids.get(uid) == case.name for uid in crashed):
            problem = "unhandled exception"
        elif refused:
            problem = f"Telegram refused: {refused[0].description}"
        elif case.expect is Expect.REPLY and not own:
            problem = "no reply"
            tally.lost += 1
        elif (
            case.expect is Expect.REPLY and case.contains and case.contains not in str(own[0].text)
        ):
            problem = f"unexpected reply: {str(own[0].text)[:60]!r}"
        elif case.expect is Expect.IGNORE and own:
            problem = f"answered a deliberate ignore: {str(own[0].text)[:60]!r}"
        if problem is None:
            tally.survived += 1
        else:
            tally.failures.append(f"{case.name}: {problem}")
    with capsys.disabled():
        print(
            f"\nbad-input corpus: tried {tally.tried}, survived {tally.survived}, "
            f"messages lost {tally.lost}, unhandled exceptions {len(bot.errors)}"
        )
    assert tally.failures == [], tally.failures
    assert bot.errors == []
    assert error_logs() == []
    assert api_errors(api) == []
