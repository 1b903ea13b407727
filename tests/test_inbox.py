"""A worker killed with updates in flight loses none of them: the inbox replays them.

Telegram forgets an update as soon as the bot acknowledges it (the next getUpdates), long before
the update is handled. The crash test runs `kindred run` as a real process against the Bot API
fake, kills it with SIGKILL while a person's messages are acknowledged but not yet answered, and
starts it again: the person must end up with exactly the replies a person without a crash got.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import create_engine, sessionmaker
from bot.db.models import InboxUpdate, User
from bot.housekeeping import purge_stale_inbox
from bot.identity import Identity
from bot.inbox import KEEP_TIMEOUT, MAX_ATTEMPTS, Inbox
from bot.repository import utcnow
from tests.botapi_fake import FakeBotAPI
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parent.parent
BOT_ID = 4_200_000_001
REPLY_TIMEOUT = 30.0


def _inbox(engine: AsyncEngine) -> Inbox:
    identity = Identity(TEST_SECRET)
    return Inbox(engine, identity.encrypt, identity.decrypt, flush_seconds=0.01)


def _raw(update_id: int, text: str = "hello") -> dict[str, object]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_790_000_000,
            "chat": {"id": 9_100_000_001, "type": "private"},
            "from": {"id": 9_100_000_001, "is_bot": False, "first_name": "Samantha"},
            "text": text,
        },
    }


def _bot_id() -> int:
    """A bot id no other test uses (tests share a database per session)."""
    return BOT_ID + secrets.randbelow(10**8)


async def _rows(engine: AsyncEngine, bot_id: int) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(InboxUpdate).where(InboxUpdate.bot_id == bot_id)
        return int((await conn.execute(query)).scalar_one())


async def _received(engine: AsyncEngine, bot_id: int, update_id: int, ago: timedelta) -> None:
    """Backdate when an update was kept."""
    async with engine.begin() as conn:
        await conn.execute(
            update(InboxUpdate)
            .where(InboxUpdate.bot_id == bot_id, InboxUpdate.update_id == update_id)
            .values(received_at=utcnow() - ago)
        )


# --- the inbox itself -------------------------------------------------------------------------


async def test_kept_updates_come_back_in_order_until_handled(engine: AsyncEngine) -> None:
    inbox, bot_id = _inbox(engine), _bot_id()
    await inbox.keep(bot_id, [_raw(12, "second"), _raw(11, "first")])
    await inbox.keep(bot_id, [_raw(11, "first")])  # redelivered: kept once

    left = await inbox.left_over(bot_id)
    assert [raw["update_id"] for raw in left] == [11, 12]
    assert left[0] == _raw(11, "first")

    inbox.done(bot_id, 11)
    await asyncio.sleep(0.1)  # deletes are batched, a few milliseconds late
    assert [raw["update_id"] for raw in await inbox.left_over(bot_id)] == [12]
    inbox.done(bot_id, 12)
    await inbox.aclose()
    assert await _rows(engine, bot_id) == 0


async def test_the_message_is_not_readable_in_the_table(engine: AsyncEngine) -> None:
    inbox, bot_id = _inbox(engine), _bot_id()
    await inbox.keep(bot_id, [_raw(7, "i took too much and feel strange")])
    async with engine.connect() as conn:
        stored = (
            await conn.execute(select(InboxUpdate.payload).where(InboxUpdate.bot_id == bot_id))
        ).scalar_one()
    # Needles long enough not to turn up in base64 by chance.
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert "took too much" not in stored and "9100000001" not in stored
    assert "Samantha" not in stored


async def test_an_update_that_keeps_failing_is_given_up(engine: AsyncEngine) -> None:
    inbox, bot_id = _inbox(engine), _bot_id()
    await inbox.keep(bot_id, [_raw(5)])
    for _ in range(MAX_ATTEMPTS):  # each start replays it, and each time the worker dies
        assert [raw["update_id"] for raw in await inbox.left_over(bot_id)] == [5]
    assert await inbox.left_over(bot_id) == []
    assert inbox.counters.given_up == 1 and await _rows(engine, bot_id) == 0


async def test_an_unreadable_update_is_dropped_not_replayed(engine: AsyncEngine) -> None:
    bot_id = _bot_id()
    other_key = Identity(b"another deployment's secret, long enough to count")
    await Inbox(engine, other_key.encrypt, other_key.decrypt).keep(bot_id, [_raw(3)])
    inbox = _inbox(engine)
    assert await inbox.left_over(bot_id) == []
    assert inbox.counters.given_up == 1 and await _rows(engine, bot_id) == 0


async def test_webhook_workers_take_only_old_updates_and_each_once(engine: AsyncEngine) -> None:
    inbox, bot_id = _inbox(engine), _bot_id()
    await inbox.keep(bot_id, [_raw(1), _raw(2)])
    await _received(engine, bot_id, 1, timedelta(minutes=5))
    cutoff = utcnow() - timedelta(minutes=2)
    # Update 2 is recent: a live worker is handling it.
    assert [raw["update_id"] for raw in await inbox.left_over(bot_id, cutoff)] == [1]
    # Another worker sweeping right after does not replay update 1 again.
    assert await _inbox(engine).left_over(bot_id, utcnow() - timedelta(minutes=2)) == []


async def test_no_database_costs_only_the_protection(tmp_path: Path) -> None:
    missing = create_engine(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/db.sqlite3")
    try:
        inbox = _inbox(missing)
        await inbox.keep(_bot_id(), [_raw(1)])  # no exception: the update is still handled
        assert inbox.counters.unavailable == 1 and inbox.counters.kept == 0
        assert await inbox.left_over(_bot_id()) == []
    finally:
        await missing.dispose()


async def test_housekeeping_drops_what_nobody_replayed_within_a_day(engine: AsyncEngine) -> None:
    inbox, bot_id = _inbox(engine), _bot_id()
    await inbox.keep(bot_id, [_raw(1), _raw(2)])
    await _received(engine, bot_id, 1, timedelta(days=2))
    assert await purge_stale_inbox(sessionmaker(engine), utcnow()) >= 1
    assert [raw["update_id"] for raw in await inbox.left_over(bot_id)] == [2]


async def test_a_database_that_hangs_holds_polling_back_two_seconds_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts the connection and says nothing, like a lost host
        await reader.read()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hanging = create_engine(f"postgresql+asyncpg://kindred@127.0.0.1:{port}/kindred")
    try:
        inbox = _inbox(hanging)
        started = time.monotonic()
        await inbox.keep(_bot_id(), [_raw(1)])
        assert time.monotonic() - started < KEEP_TIMEOUT + 1.0
        assert inbox.counters.unavailable == 1
        # Starting up against it: nothing to replay, after a bounded wait, and polling starts.
        monkeypatch.setattr("bot.inbox.REPLAY_TIMEOUT", 0.5)
        started = time.monotonic()
        assert await inbox.left_over(_bot_id()) == []
        assert time.monotonic() - started < 1.5
    finally:
        await hanging.dispose()
        server.close()
        for writer in accepted:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


@pytest.mark.postgres
async def test_a_connection_cut_by_the_server_is_not_used_again(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    inbox, bot_id = _inbox(engine), _bot_id()
    try:
        await inbox.keep(bot_id, [_raw(1)])  # the pool now holds one connection
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:  # a PostgreSQL restart, for that connection
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)
        for update_id in (2, 3, 4):
            await inbox.keep(bot_id, [_raw(update_id)])
        # At most the write on the cut connection is lost; the pool recovers after it.
        assert inbox.counters.unavailable <= 1
        kept = [raw["update_id"] for raw in await inbox.left_over(bot_id)]
        assert kept[-2:] == [3, 4] and kept[0] == 1
    finally:
        await engine.dispose()
        await admin.dispose()


# --- a real worker, killed -------------------------------------------------------------------


class BotProcess:
    """`kindred run --role bot` as its own process, polling the fake."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, api: FakeBotAPI, db_url: str, token: str) -> BotProcess:
        env = {
            **os.environ,
            "KINDRED_DATABASE_URL": db_url,
            "KINDRED_SECRET_KEY": TEST_SECRET.decode(),
            "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_API_BASE": api.base_url,
        }
        for name in ("RASA_URL", "REDIS_URL", "KINDRED_WEBHOOK_URL", "KINDRED_VOLUNTEER_CHAT_ID"):
            env.pop(name, None)
        polls = _polls(api, token)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "--role",
            "bot",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        started = cls(process)
        await _until(lambda: _polls(api, token) > polls or process.returncode is not None, 90)
        assert process.returncode is None, "the bot exited at start"
        return started

    async def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash or the out-of-memory killer."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                await self.kill()


def _polls(api: FakeBotAPI, token: str) -> int:
    """Polling starts: PTB clears any webhook right before its first getUpdates (which the fake
    records only once the long poll ends)."""
    return sum(1 for call in api.calls if call.method == "deleteWebhook" and call.token == token)


async def _until(condition: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(api: FakeBotAPI, db_url: str, token: str) -> AsyncIterator[BotProcess]:
    bot = await BotProcess.start(api, db_url, token)
    try:
        yield bot
    finally:
        await bot.stop()


def _texts(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [str(item.text) for item in api.sent(chat_id)]


MESSAGES = ("/help", "/coping", "thanks, i feel a little better now")


async def _conversation(api: FakeBotAPI, user: int) -> None:
    """Onboarding, answered before anything goes wrong."""
    api.inject_message(user, "/start")
    await api.wait_for_sent(user, 1, timeout=REPLY_TIMEOUT)
    api.inject_callback(user, int(api.sent(user)[-1].message_id or 1), "onb:yes")
    await api.wait_for_sent(user, 2, timeout=REPLY_TIMEOUT)


@pytest.mark.postgres
async def test_a_killed_worker_answers_every_acknowledged_message_after_restart(
    postgres_url: str,
) -> None:
    token = f"{secrets.randbelow(10**9) + 1}:INBOX"
    calm = 7_100_000_000 + secrets.randbelow(10**8)
    crashed = 7_300_000_000 + secrets.randbelow(10**8)
    person = Identity(TEST_SECRET).pseudonym("telegram", str(crashed))
    engine = create_engine(postgres_url)
    async with FakeBotAPI(token=token) as api:
        first = await BotProcess.start(api, postgres_url, token)
        try:
            # What a person sees when nothing goes wrong.
            await _conversation(api, calm)
            for message in MESSAGES:
                before = len(api.sent(calm))
                api.inject_message(calm, message)
                await api.wait_for_sent(calm, before + 1, timeout=REPLY_TIMEOUT)
            expected = _texts(api, calm)[2:]

            await _conversation(api, crashed)
            async with engine.begin() as blocker:
                # The person's row is busy (a slow transaction elsewhere): the first message
                # waits for it, the others wait behind the first (one person's messages are
                # handled in order), and the bot has acknowledged all three to Telegram.
                await blocker.execute(select(User.id).where(User.id == person).with_for_update())
                for message in MESSAGES:
                    api.inject_message(crashed, message)
                await _until(lambda: not api.pending_updates(token), 30)
                await asyncio.sleep(0.5)
                await first.kill()
            assert len(api.sent(crashed)) == 2 and not api.pending_updates(token)
            # Telegram will not send these three again: only the inbox still has them.
            async with running(api, postgres_url, token):
                await api.wait_for_sent(crashed, 2 + len(expected), timeout=REPLY_TIMEOUT)
                await api.wait_until_idle()
            assert _texts(api, crashed)[2:] == expected  # nothing lost, nothing twice
            assert await _rows(engine, _bot_id_of(token)) == 0
        finally:
            await first.kill()
            await engine.dispose()


def _bot_id_of(token: str) -> int:
    return int(token.split(":")[0])
