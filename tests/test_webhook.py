"""Webhook mode over real HTTP: workers on PostgreSQL and Redis, the secret token, health, metrics.

Each worker is `run_webhook` itself (uvicorn on its own port, its own Application and engine),
the Bot API fake plays Telegram: it makes the updates and receives the replies; the test posts
each update to a worker the way Telegram would, waiting for the 200 before sending the next.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from bot.config import Settings
from bot.db.engine import create_engine
from bot.db.models import InboxUpdate, ProcessedUpdate
from bot.identity import Identity
from bot.inbox import Inbox
from bot.webhook import (
    SECRET_HEADER,
    HealthChecks,
    RedisPersonOrder,
    create_asgi_app,
    run_ops_server,
    run_webhook,
    webhook_secret,
)
from bot.wiring import Runtime, build_runtime
from nlu.pipeline import NluPipeline
from nlu.understanding import Understanding
from tests.botapi_fake import FakeBotAPI
from tests.conftest import TEST_SECRET

REDIS_URL = os.environ.get("KINDRED_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WEBHOOK_URL = "https://kindred.example.org/telegram"
INTRO = "automated assistant"
HELP = "Here's what I can do"


class SlowBackend:
    """An NLU backend that takes its time, like a loaded Rasa: the worker it serves lags."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    async def parse(self, text: str) -> Understanding:
        """Wait, then understand."""
        await asyncio.sleep(self._delay)
        understood: Understanding = await self._inner.parse(text)
        return understood


def slow(pipeline: NluPipeline, delay: float) -> NluPipeline:
    """The same pipeline behind a slow backend."""
    return NluPipeline(SlowBackend(pipeline.backend, delay), pipeline.safety, pipeline.language)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def a_person() -> int:
    """A Telegram user id of its own per test (Redis queues are per person)."""
    return 6_000_000_000 + secrets.randbelow(10**9)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The Redis server the workers share; missing Redis fails unless KINDRED_SKIP_REDIS=1."""
    if os.environ.get("KINDRED_SKIP_REDIS") == "1":
        pytest.skip("KINDRED_SKIP_REDIS=1: Redis tests deliberately not run")
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:  # pragma: no cover - only when the server is down
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    yield REDIS_URL


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    """A fresh Bot API fake with a bot of its own (update ids restart at 1 in every fake)."""
    token = f"{secrets.randbelow(10**9) + 1}:TEST-webhook"
    async with FakeBotAPI(token=token) as fake:
        yield fake


@dataclass
class Worker:
    """One running webhook worker."""

    port: int
    settings: Settings
    runtime: Runtime
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        """The worker's root URL."""
        return f"http://127.0.0.1:{self.port}"


def worker_settings(api: FakeBotAPI, database_url: str, redis: str | None) -> Settings:
    """What `kindred run` would read from the environment for one worker."""
    return Settings(
        database_url=database_url,
        secret_key=TEST_SECRET.decode(),
        telegram_bot_token=api._default_token,
        telegram_api_base=api.base_url,
        webhook_url=WEBHOOK_URL,
        http_port=free_port(),
        redis_url=redis,
    )


@asynccontextmanager
async def worker(
    api: FakeBotAPI, database_url: str, nlu: NluPipeline, redis: str | None = None
) -> AsyncIterator[Worker]:
    """Start `run_webhook` and wait until it listens; stop it (gracefully) afterwards."""
    settings = worker_settings(api, database_url, redis)
    runtime = await build_runtime(settings, migrate=False, nlu=nlu)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_webhook(settings, runtime, stop, host="127.0.0.1", ready=ready))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiting.cancel()
        await runtime.aclose()
        await task  # raises what kept it from starting
        raise AssertionError("webhook worker did not start")
    running = Worker(settings.http_port, settings, runtime, stop, task)
    try:
        yield running
    finally:
        stop.set()
        await task
        await runtime.aclose()


async def post(
    client: httpx.AsyncClient, target: Worker, update: dict[str, Any], secret: str | None = None
) -> int:
    """POST an update the way Telegram does; returns the HTTP status."""
    headers = {} if secret == "" else {SECRET_HEADER: secret or webhook_secret(target.settings)}
    response = await client.post(f"{target.url}/telegram", json=update, headers=headers)
    return response.status_code


async def handled_update_ids(database_url: str, bot_id: int) -> list[int]:
    """The update ids the database recorded as handled for this bot."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(ProcessedUpdate.update_id)
                .where(ProcessedUpdate.bot_id == bot_id)
                .order_by(ProcessedUpdate.update_id)
            )
            return [int(r[0]) for r in rows]
    finally:
        await engine.dispose()


async def settle(seconds: float) -> None:
    """Give the workers time to do anything they were (wrongly) going to do.

    (The fake's wait_until_idle counts queued updates, and with a webhook nobody fetches them.)
    """
    await asyncio.sleep(seconds)


def kinds(texts: list[str]) -> list[str]:
    """Which reply each text is: the introduction or the help text."""
    return ["intro" if INTRO in t else "help" if HELP in t else t[:40] for t in texts]


def bot_id(api: FakeBotAPI) -> int:
    """The fake bot's id (the token's number)."""
    return int(api._default_token.split(":")[0])


Script = list[tuple[str, int]]  # (what the person sends, which worker gets it)


async def send_interleaved(
    api: FakeBotAPI, workers: list[Worker], person: int, script: Script
) -> list[dict[str, Any]]:
    """Send the script's messages to alternating workers, each after the previous 200."""
    updates = []
    async with httpx.AsyncClient() as client:
        for text, index in script:
            update = api.inject_message(person, text)
            updates.append(update)
            assert await post(client, workers[index], update) == 200
    return updates


INTERLEAVED: Script = [("hello there", 0), ("/help", 1), ("/start", 0), ("/help", 1)]


@pytest.mark.postgres
async def test_two_workers_keep_one_persons_updates_in_order_and_handle_each_once(
    api: FakeBotAPI, postgres_url: str, redis_url: str, nlu_pipeline: NluPipeline
) -> None:
    person = a_person()
    # Worker 0 is slow to understand text: without a shared order, worker 1 would overtake it.
    async with (
        worker(api, postgres_url, slow(nlu_pipeline, 0.4), redis_url) as first,
        worker(api, postgres_url, nlu_pipeline, redis_url) as second,
    ):
        updates = await send_interleaved(api, [first, second], person, INTERLEAVED)
        sent = await api.wait_for_sent(person, 4, timeout=20)
        assert kinds([str(s.text) for s in sent]) == ["intro", "help", "intro", "help"]

        # Telegram redelivers an update (no 200 in time, say), to the other worker: ignored.
        async with httpx.AsyncClient() as client:
            assert await post(client, first, updates[1]) == 200
            assert await post(client, second, updates[0]) == 200
        await settle(0.8)
        assert len(api.sent(person)) == 4
        assert await handled_update_ids(postgres_url, bot_id(api)) == [
            u["update_id"] for u in updates
        ]
        info = api._bot(None)
        assert info.webhook_url == WEBHOOK_URL  # both registered the same webhook


@pytest.mark.postgres
async def test_without_redis_the_row_lock_alone_lets_a_slow_worker_be_overtaken(
    api: FakeBotAPI, postgres_url: str, nlu_pipeline: NluPipeline
) -> None:
    """Why REDIS_URL is required with several workers: the row lock serialises, not orders."""
    person = a_person()
    async with (
        worker(api, postgres_url, slow(nlu_pipeline, 0.4)) as first,
        worker(api, postgres_url, nlu_pipeline) as second,
    ):
        await send_interleaved(api, [first, second], person, INTERLEAVED[:2])
        sent = await api.wait_for_sent(person, 2, timeout=20)
    # Each handled once, but the person got the answers the wrong way round.
    assert kinds([str(s.text) for s in sent]) == ["help", "intro"]


async def test_a_wrong_or_missing_secret_token_is_refused_and_nothing_is_processed(
    api: FakeBotAPI, db_url: str, nlu_pipeline: NluPipeline
) -> None:
    person = a_person()
    async with worker(api, db_url, nlu_pipeline) as only, httpx.AsyncClient() as client:
        update = api.inject_message(person, "/help")
        assert await post(client, only, update, secret="") == 403
        assert await post(client, only, update, secret="not-the-secret") == 403
        assert await post(client, only, update, secret=webhook_secret(only.settings)[:-1]) == 403
        garbage = await client.post(
            f"{only.url}/telegram",
            content=b"{not json",
            headers={SECRET_HEADER: webhook_secret(only.settings)},
        )
        assert garbage.status_code == 400
        unreadable = await client.post(
            f"{only.url}/telegram",
            json={"update_id": 10**6, "message": {"message_id": "x", "chat": "a string"}},
            headers={SECRET_HEADER: webhook_secret(only.settings)},
        )
        assert unreadable.status_code == 200  # acknowledged, so Telegram does not hold it
        await settle(0.5)
        assert api.sent(person) == []
        assert await handled_update_ids(db_url, bot_id(api)) == []

        assert await post(client, only, update) == 200  # the right token: handled
        assert HELP in str((await api.wait_for_sent(person, 1, timeout=15))[0].text)


async def test_a_configured_webhook_secret_replaces_the_derived_one(
    api: FakeBotAPI, sqlite_url: str
) -> None:
    settings = worker_settings(api, sqlite_url, None)
    derived = webhook_secret(settings)
    assert derived == webhook_secret(settings)  # every worker derives the same
    assert len(derived) >= 32 and derived.replace("-", "").replace("_", "").isalnum()
    assert webhook_secret(settings, "from-KINDRED_WEBHOOK_SECRET") == "from-KINDRED_WEBHOOK_SECRET"


async def test_shutdown_finishes_updates_already_accepted(
    api: FakeBotAPI, db_url: str, nlu_pipeline: NluPipeline
) -> None:
    person = a_person()
    settings = worker_settings(api, db_url, None)
    runtime = await build_runtime(settings, migrate=False, nlu=slow(nlu_pipeline, 0.6))
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_webhook(settings, runtime, stop, host="127.0.0.1", ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        target = Worker(settings.http_port, settings, runtime, stop, task)
        async with httpx.AsyncClient() as client:
            assert await post(client, target, api.inject_message(person, "hi, anyone there")) == 200
        stop.set()  # SIGTERM right after the 200: the update is still in its slow NLU call
        await asyncio.wait_for(task, 30)
        # run_webhook returned only after the reply went out.
        assert INTRO in str(api.sent(person)[0].text)
    finally:
        stop.set()
        await runtime.aclose()


async def inbox_rows(database_url: str, bot: int) -> int:
    """Updates of this bot still in the inbox."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(InboxUpdate.update_id).where(InboxUpdate.bot_id == bot)
            )
            return len(rows.all())
    finally:
        await engine.dispose()


async def test_an_update_a_crashed_worker_accepted_is_answered_by_another(
    api: FakeBotAPI, db_url: str, nlu_pipeline: NluPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker answered 200 (Telegram forgot the update) and died before handling it: all that
    # is left is its inbox row. Any worker's sweep picks it up once it is REPLAY_GRACE old.
    monkeypatch.setattr("bot.webhook.REPLAY_GRACE", 1.0)
    monkeypatch.setattr("bot.webhook.REPLAY_EVERY", 0.2)
    person = a_person()
    orphan = api.inject_message(person, "/help")
    identity = Identity(TEST_SECRET)
    engine = create_engine(db_url)
    try:
        await Inbox(engine, identity.encrypt, identity.decrypt).keep(bot_id(api), [orphan])
    finally:
        await engine.dispose()

    async with worker(api, db_url, nlu_pipeline) as live, httpx.AsyncClient() as client:
        fresh = a_person()
        assert await post(client, live, api.inject_message(fresh, "/help")) == 200
        (reply,) = await api.wait_for_sent(person, 1, timeout=20)
        assert HELP in str(reply.text)
        await api.wait_for_sent(fresh, 1, timeout=20)
        await settle(0.5)
    assert kinds([str(item.text) for item in api.sent(person)]) == ["help"]  # once
    assert await inbox_rows(db_url, bot_id(api)) == 0  # both handled, both forgotten


async def test_healthz_and_metrics_answer(
    api: FakeBotAPI, db_url: str, redis_url: str, nlu_pipeline: NluPipeline
) -> None:
    person = a_person()
    async with worker(api, db_url, nlu_pipeline, redis_url) as only, httpx.AsyncClient() as client:
        assert await post(client, only, api.inject_message(person, "/help")) == 200
        await api.wait_for_sent(person, 1, timeout=15)
        health = await client.get(f"{only.url}/healthz")
        assert health.status_code == 200
        report = health.json()
        assert report["checks"]["database"]["ok"] and report["checks"]["redis"]["ok"]
        assert report["checks"]["webhook"]["ok"] is True
        assert report["status"] == "ok"
        scraped = await client.get(f"{only.url}/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        body = scraped.text
        assert 'kindred_updates_total{kind="command"}' in body
        assert "kindred_update_handling_seconds_bucket" in body
        assert (
            "kindred_escalations_open" in body or "kindred_escalation_oldest_open_seconds" in body
        )
        assert "kindred_metrics_database_up 1.0" in body
        assert "kindred_nlu_backend" in body
        assert str(person) not in body  # no identifiers in labels


def asgi_client(app: Any) -> httpx.AsyncClient:
    """An httpx client talking to the ASGI app in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker")


async def test_healthz_is_503_without_the_database_and_degraded_without_rasa(
    sqlite_url: str,
) -> None:
    dead = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    alive = create_engine(sqlite_url)
    rasa_down = f"http://127.0.0.1:{free_port()}"
    try:
        async with asgi_client(create_asgi_app(HealthChecks(dead, timeout=1.0))) as client:
            response = await client.get("/healthz")
            assert response.status_code == 503
            assert response.json()["status"] == "fail"
            assert response.json()["checks"]["database"]["ok"] is False
            # No /telegram without a dispatcher (the scheduler's ops server).
            assert (await client.post("/telegram", json={})).status_code == 404
        checks = HealthChecks(alive, rasa_url=rasa_down, timeout=1.0)
        async with asgi_client(create_asgi_app(checks)) as client:
            response = await client.get("/healthz")
            # The embedded interpreter answers without Rasa: degraded, but still serving.
            assert response.status_code == 200
            assert response.json()["status"] == "degraded"
            assert response.json()["checks"]["rasa"] == {
                "ok": False,
                "error": "ConnectError",
                "required": False,
            }
    finally:
        await dead.dispose()
        await alive.dispose()


@asynccontextmanager
async def person_order(
    redis_url: str, stale_after: float = 60.0, lease_seconds: float = 30.0
) -> AsyncIterator[RedisPersonOrder]:
    """A RedisPersonOrder on keys of this test's own."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield RedisPersonOrder(
            client,
            prefix=f"kindred:test:{uuid.uuid4().hex}:",
            stale_after=stale_after,
            lease_seconds=lease_seconds,
        )
    finally:
        await client.aclose()


async def test_an_update_a_dead_worker_abandoned_does_not_block_the_person(redis_url: str) -> None:
    async with person_order(redis_url, stale_after=0.3) as order:
        started = time.monotonic()
        await order.enter("someone", 1)  # accepted, then the worker died before starting it
        await order.enter("someone", 2)
        async with order.turn("someone", 2):
            waited = time.monotonic() - started
        assert 0.3 <= waited < 5  # 1 was skipped once stale, not before
        async with order.turn("someone", 1):  # (a redelivery of 1 would just go ahead)
            pass


async def test_a_long_running_update_keeps_its_turn_while_it_runs(redis_url: str) -> None:
    events: list[str] = []
    async with person_order(redis_url, stale_after=0.2, lease_seconds=0.3) as order:
        await order.enter("someone", 1)
        await order.enter("someone", 2)

        async def first() -> None:
            async with order.turn("someone", 1):
                events.append("1 starts")
                await asyncio.sleep(0.8)  # longer than stale_after and the lease: renewed
                events.append("1 ends")

        async def second() -> None:
            await asyncio.sleep(0.05)
            async with order.turn("someone", 2):
                events.append("2 starts")

        await asyncio.gather(first(), second())
    assert events == ["1 starts", "1 ends", "2 starts"]


async def test_the_scheduler_role_serves_health_and_metrics_but_no_webhook(
    sqlite_url: str, nlu_pipeline: NluPipeline
) -> None:
    settings = Settings(
        database_url=sqlite_url, secret_key=TEST_SECRET.decode(), http_port=free_port()
    )
    runtime = await build_runtime(settings, migrate=False, nlu=nlu_pipeline)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run_ops_server(settings, runtime, stop, host="127.0.0.1", ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), 20)
        base = f"http://127.0.0.1:{settings.http_port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).json()["status"] == "ok"
            assert "kindred_metrics_database_up 1.0" in (await client.get(f"{base}/metrics")).text
            assert (await client.post(f"{base}/telegram", json={})).status_code == 404
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await runtime.aclose()
