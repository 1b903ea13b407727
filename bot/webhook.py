"""Webhook mode: an ASGI server (Starlette + uvicorn) for Telegram's updates, health and metrics.

Routes
- POST /telegram   Telegram's update, checked against the secret token; 200 once accepted
- GET  /healthz    database, Redis and Rasa reachability as JSON; 503 when a must-have fails
- GET  /metrics    Prometheus exposition (bot.metrics)

Several workers run behind one load balancer with no state of their own. What keeps one
person's updates in order and handled once:
- handled once: the update id is claimed in `processed_updates` inside the handling
  transaction (a redelivery, to any worker, is ignored);
- in order within a worker: PTB's per-person update processor (bot.telegram.ordering);
- in order across workers (with REDIS_URL): `RedisPersonOrder`. A worker registers each update
  in the person's Redis queue *before* answering 200, so by the time Telegram sends the next
  one it is already queued behind; each update waits until it is the oldest of its person's.
  The row lock in get_or_create_user alone only makes updates mutually exclusive, not ordered:
  a worker that is slower to reach the lock (a slow NLU call) lets a later update overtake.

Shutdown (SIGTERM): stop accepting, answer the requests already in, then finish every accepted
update (up to `drain_timeout`) before closing the Application and the database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot import metrics
from bot.config import Settings
from bot.identity import Identity, derive_token
from bot.repository import utcnow
from bot.telegram.app import (
    Background,
    KindredApplication,
    create_application,
    freeze_startup_objects,
)
from bot.telegram.updates import person_key
from bot.wiring import Runtime

__all__ = [
    "HealthChecks",
    "RedisPersonOrder",
    "UpdateDispatcher",
    "create_asgi_app",
    "replay_left_over",
    "run_ops_server",
    "run_webhook",
    "webhook_secret",
]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY_BYTES = 1_000_000  # an update is a few KB; anything near this is not from Telegram
DRAIN_TIMEOUT = 25.0  # below Docker's default 30 s stop grace period (docker-compose.yml)
# A stopped worker's unhandled updates are replayed by any worker after REPLAY_GRACE seconds
# (a live worker answers within seconds; the sender gives up on a reply well before this).
REPLAY_GRACE = 120.0
REPLAY_EVERY = 30.0
REGISTER_RETRY_MAX = 300.0


def webhook_secret(settings: Settings, configured: str | None = None) -> str:
    """KINDRED_WEBHOOK_SECRET when set, else one derived from the deployment secret."""
    if configured:
        return configured
    # Every worker derives the same value from KINDRED_SECRET_KEY: nothing more to configure.
    return derive_token(settings.resolved_secret(), "telegram-webhook-secret")


# ---------------------------------------------------------------------------------------------
# Per-person order across workers
# ---------------------------------------------------------------------------------------------


class RedisPersonOrder:
    """A per-person queue of update ids in Redis; each update waits to be its person's oldest.

    Keys hold pseudonyms (HMAC of the Telegram id), never the id, and expire when idle.
    A worker that dies leaves its entries behind: an entry nobody has started within
    `stale_after` seconds, or whose holder stopped renewing its lease, is skipped.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "kindred:order:",
        stale_after: float = 60.0,
        lease_seconds: float = 30.0,
        max_wait: float = 120.0,
        poll_interval: float = 0.01,
        key_ttl: int = 3600,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._stale_after = stale_after
        self._lease_ms = int(lease_seconds * 1000)
        self._max_wait = max_wait
        self._poll = poll_interval
        self._ttl = key_ttl

    def _keys(self, person: str) -> tuple[str, str, str]:
        base = self._prefix + person
        return base, base + ":received", base + ":lease"

    async def enter(self, person: str, update_id: int) -> None:
        """Queue the update behind the person's earlier ones (call before answering 200)."""
        queue, received, _ = self._keys(person)
        member = str(update_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(queue, {member: update_id}, nx=True)
            pipe.hsetnx(received, member, str(time.time()))
            pipe.expire(queue, self._ttl)
            pipe.expire(received, self._ttl)
            await pipe.execute()

    @asynccontextmanager
    async def turn(self, person: str, update_id: int) -> AsyncIterator[None]:
        """Wait until every earlier update of the person is done; hold the turn meanwhile.

        Redis failing midway costs the order, never the update: it goes ahead regardless.
        """
        queue, received, lease = self._keys(person)
        member = str(update_id)
        renew: asyncio.Task[None] | None = None
        try:
            try:
                await self._wait(queue, received, lease, member)
                await self._redis.set(lease, member, px=self._lease_ms)
                renew = asyncio.create_task(self._renew(lease, member))
            except (RedisError, OSError) as exc:
                log.warning("per-person order unavailable (%s): going ahead", type(exc).__name__)
            yield
        finally:
            # Also when cancelled while waiting (shutdown): nobody must wait behind us.
            if renew is not None:
                renew.cancel()
                with suppress(asyncio.CancelledError):
                    await renew
            with suppress(RedisError, OSError):
                await self._release(queue, received, lease, member)

    async def _release(self, queue: str, received: str, lease: str, member: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue, member)
            pipe.hdel(received, member)
            await pipe.execute()
        if await self._redis.get(lease) == member:
            await self._redis.delete(lease)

    async def _wait(self, queue: str, received: str, lease: str, member: str) -> None:
        deadline = time.monotonic() + self._max_wait
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrange(queue, 0, 0)
                pipe.zscore(queue, member)
                pipe.get(lease)
                head_list, score, holder = await pipe.execute()
            head = head_list[0] if head_list else None
            # Our turn; or we are not queued at all (a redelivery of an update already done).
            if head is None or head == member or score is None:
                return
            if holder != head and await self._is_stale(received, head):
                log.warning("per-person order: skipping an update abandoned by a stopped worker")
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(queue, head)
                    pipe.hdel(received, head)
                    await pipe.execute()
                continue
            if time.monotonic() > deadline:
                # Liveness over order: a person must never be stuck behind a lost update.
                log.warning("per-person order: waited %.0fs, going ahead", self._max_wait)
                return
            await asyncio.sleep(self._poll)

    async def _is_stale(self, received: str, head: str) -> bool:
        at = await self._redis.hget(received, head)
        return at is None or time.time() - float(at) > self._stale_after

    async def _renew(self, lease: str, member: str) -> None:
        """Keep the lease while the update runs (a crashed worker's lease simply expires)."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            with suppress(RedisError, OSError):
                await self._redis.set(lease, member, px=self._lease_ms)


# ---------------------------------------------------------------------------------------------
# Accepting and processing updates
# ---------------------------------------------------------------------------------------------


class UpdateDispatcher:
    """Takes accepted updates to the Application: ordered per person, counted, drained on stop."""

    def __init__(
        self,
        application: Application,
        identity: Identity,
        order: RedisPersonOrder | None = None,
        max_concurrent: int = 256,
    ) -> None:
        self._application = application
        self._identity = identity
        self._order = order
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.webhook_registered = False

    @property
    def in_flight(self) -> int:
        """Updates accepted and not yet finished."""
        return len(self._tasks)

    async def accept(self, update: Update) -> None:
        """Queue the update for its person (before the 200), then process it in the background."""
        ticket: str | None = None
        person = person_key(update)
        if self._order is not None and person is not None:
            ticket = self._identity.pseudonym("telegram", person)
            try:
                await self._order.enter(ticket, update.update_id)
            except (RedisError, OSError) as exc:
                # Redis down: still answer the person; only cross-worker order is lost.
                log.warning("per-person order unavailable (%s)", type(exc).__name__)
                ticket = None
        task = asyncio.create_task(self._run(update, ticket))
        self._tasks.add(task)
        metrics.INFLIGHT.inc()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        metrics.INFLIGHT.dec()
        if not task.cancelled() and task.exception() is not None:
            log.error("update task failed: %s", type(task.exception()).__name__)

    async def _run(self, update: Update, ticket: str | None) -> None:
        started = time.perf_counter()
        kind = metrics.update_kind(update)
        try:
            if ticket is None or self._order is None:
                # In-process order only (one worker, or Redis unavailable).
                processor = self._application.update_processor
                await processor.process_update(update, self._application.process_update(update))
            else:
                await self._run_in_turn(update, ticket)
        finally:
            metrics.observe_update(kind, time.perf_counter() - started)

    async def _run_in_turn(self, update: Update, ticket: str) -> None:
        assert self._order is not None
        # The slot is taken after the turn: waiting for one's turn must not use up the slots
        # the person ahead needs to finish.
        async with self._order.turn(ticket, update.update_id), self._slots:
            await self._application.process_update(update)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> int:  # noqa: ASYNC109
        """Finish every accepted update; returns how many had to be abandoned."""
        self.closing = True
        pending = set(self._tasks)
        if not pending:
            return 0
        log.info("finishing %d updates before exiting", len(pending))
        _, unfinished = await asyncio.wait(pending, timeout=timeout)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.error("shutdown: %d updates abandoned after %.0fs", len(unfinished), timeout)
            await asyncio.wait(unfinished)
        return len(unfinished)


# ---------------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------------


@dataclass
class HealthChecks:
    """What /healthz checks; Rasa and the webhook registration are reported, not required."""

    engine: AsyncEngine
    redis: Redis | None = None
    rasa_url: str | None = None
    dispatcher: UpdateDispatcher | None = None
    timeout: float = 2.0

    async def _database(self) -> dict[str, Any]:
        async with asyncio.timeout(self.timeout), self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"ok": True}

    async def _redis(self) -> dict[str, Any]:
        assert self.redis is not None
        async with asyncio.timeout(self.timeout):
            await self.redis.ping()
        return {"ok": True}

    async def _rasa(self) -> dict[str, Any]:
        assert self.rasa_url is not None
        # Rasa's root answers "Hello from Rasa" without the token: reachability, no secrets.
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(self.rasa_url.rstrip("/") + "/")
        return {"ok": response.status_code == 200, "status": response.status_code}

    async def run(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report): unhealthy when the database or Redis is unreachable."""
        probes: dict[str, tuple[Callable[[], Awaitable[dict[str, Any]]], bool]] = {
            "database": (self._database, True)
        }
        if self.redis is not None:
            probes["redis"] = (self._redis, True)
        if self.rasa_url:
            # Without Rasa the embedded interpreter answers: degraded, not down. Failing the
            # health check here would take every worker out of the load balancer at once.
            probes["rasa"] = (self._rasa, False)
        results = await asyncio.gather(
            *(probe() for probe, _ in probes.values()), return_exceptions=True
        )
        checks: dict[str, Any] = {}
        healthy, degraded = True, False
        for (name, (_, required)), result in zip(probes.items(), results, strict=True):
            if isinstance(result, BaseException):
                result = {"ok": False, "error": type(result).__name__}
            result["required"] = required
            checks[name] = result
            if not result["ok"]:
                healthy = healthy and not required
                degraded = True
        if self.dispatcher is not None:
            checks["webhook"] = {
                "ok": self.dispatcher.webhook_registered,
                "required": False,
                "in_flight": self.dispatcher.in_flight,
                "closing": self.dispatcher.closing,
            }
            degraded = degraded or not self.dispatcher.webhook_registered
        status = "fail" if not healthy else "degraded" if degraded else "ok"
        return healthy, {"status": status, "checks": checks}


# ---------------------------------------------------------------------------------------------
# The ASGI app
# ---------------------------------------------------------------------------------------------


def create_asgi_app(
    health: HealthChecks,
    *,
    dispatcher: UpdateDispatcher | None = None,
    application: Application | None = None,
    secret_token: str | None = None,
    nlu_backend: object | None = None,
) -> Starlette:
    """The routes; /telegram only when a dispatcher (webhook worker) is given."""

    async def healthz(_request: Request) -> JSONResponse:
        healthy, report = await health.run()
        return JSONResponse(report, status_code=200 if healthy else 503)

    async def prometheus(_request: Request) -> Response:
        body = await metrics.render(health.engine, nlu_backend)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    if dispatcher is not None and application is not None and secret_token:
        expected = secret_token.encode()

        async def telegram(request: Request) -> Response:
            given = request.headers.get(SECRET_HEADER, "").encode()
            # Constant-time: the token is the only thing between the internet and the bot.
            if not hmac.compare_digest(given, expected):
                metrics.webhook_rejected("secret")
                return Response(status_code=403)
            if dispatcher.closing:
                return Response(status_code=503)  # Telegram retries, another worker takes it
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                metrics.webhook_rejected("too_large")
                return Response(status_code=413)
            try:
                body = await request.json()
            except ValueError:
                metrics.webhook_rejected("body")
                return Response(status_code=400)
            try:
                update = Update.de_json(body, application.bot)
            except Exception:  # untrusted content the library cannot read
                update = None
            if update is None:
                # Acknowledged, not refused: Telegram would redeliver it and hold back every
                # later update behind it. Its id alone is logged, never its content.
                metrics.webhook_rejected("unparseable")
                update_id = body.get("update_id") if isinstance(body, dict) else None
                shown = update_id if isinstance(update_id, int) else "without a usable id"
                log.warning("skipped webhook update %s: it could not be parsed", shown)
                return Response(status_code=200)
            if isinstance(application, KindredApplication) and application.inbox is not None:
                # Durable before the 200: after it, Telegram never sends this update again.
                await application.inbox.keep(application.bot.id, [body])
            await dispatcher.accept(update)
            return Response(status_code=200)

        routes.append(Route(WEBHOOK_PATH, telegram, methods=["POST"]))
    return Starlette(routes=routes)


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: `kindred run` owns SIGTERM and SIGINT."""

    def capture_signals(self) -> Any:
        """Signals set the stop event instead (bot.telegram.app.install_signal_handlers)."""
        return nullcontext()


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        # Our logging (JSON, redacted) instead of uvicorn's; no access log (client IPs).
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


async def _serve(server: _Server, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
    """Run uvicorn until `stop` is set; `ready` once it listens."""
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving  # startup failed (port taken): raise it here
                raise RuntimeError("HTTP server stopped during startup")
            await asyncio.sleep(0.02)
        if ready is not None:
            ready.set()
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        server.should_exit = True
        await serving


async def _register_webhook(
    application: Application,
    url: str,
    secret_token: str,
    dispatcher: UpdateDispatcher,
) -> None:
    """setWebhook, retried with backoff until Telegram accepts it: nothing arrives without it."""
    delay = 1.0
    while True:
        try:
            await application.bot.set_webhook(
                url=url,
                secret_token=secret_token,
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
            )
        except TelegramError as exc:
            log.error(
                "setWebhook failed (%s): Telegram delivers nothing until it succeeds; "
                "retrying in %.0fs",
                type(exc).__name__,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, REGISTER_RETRY_MAX)
            continue
        dispatcher.webhook_registered = True
        log.info("webhook registered with Telegram")
        return


def _redis_client(settings: Settings) -> Redis | None:
    if not settings.redis_url:
        return None
    return Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=5.0)


async def replay_left_over(
    application: Application,
    dispatcher: UpdateDispatcher,
    *,
    grace: float | None = None,
    every: float | None = None,
) -> None:
    """Now and then, handle what a stopped worker left in the inbox.

    Workers share the inbox and cannot tell a dead worker's update from a live one's, so only
    updates older than `grace` are taken: a live worker has answered long before that (and if
    it has not, the replay is a duplicate that `processed_updates` turns away).
    """
    if not isinstance(application, KindredApplication) or application.inbox is None:
        return
    while True:
        cutoff = utcnow() - timedelta(seconds=REPLAY_GRACE if grace is None else grace)
        try:
            for update in await application.replay_left_over(cutoff):
                await dispatcher.accept(update)
        except Exception as exc:
            log.error("inbox sweep failed (%s); trying again later", type(exc).__name__)
        await asyncio.sleep(REPLAY_EVERY if every is None else every)


async def run_webhook(
    settings: Settings,
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    secret_token: str | None = None,
    host: str = "0.0.0.0",  # inside a container, behind the proxy
    ready: asyncio.Event | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
    application: Application | None = None,
    background: Background | None = None,
) -> None:
    """`kindred run` with KINDRED_WEBHOOK_URL: serve until `stop`, then finish in-flight work.

    `application` defaults to create_application's; `background` (the follow-up scheduler,
    when this process also delivers) runs while the bot is up, as in polling mode.
    """
    if not settings.webhook_url:
        raise ValueError("KINDRED_WEBHOOK_URL is not set")
    secret = webhook_secret(settings, secret_token)
    if application is None:
        application = create_application(settings, runtime.service)
    redis = _redis_client(settings)
    order = RedisPersonOrder(redis) if redis is not None else None
    # Only pseudonyms are needed here (Redis keys), and they derive from the secret alone.
    identity = Identity(settings.resolved_secret())
    dispatcher = UpdateDispatcher(application, identity, order, settings.max_concurrent_updates)
    health = HealthChecks(runtime.engine, redis, settings.rasa_url, dispatcher)
    app = create_asgi_app(
        health,
        dispatcher=dispatcher,
        application=application,
        secret_token=secret,
        nlu_backend=runtime.nlu.backend,
    )
    server = _Server(_uvicorn_config(app, host, settings.http_port))
    try:
        async with application:
            if application.post_init is not None:
                await application.post_init(application)
            freeze_startup_objects()
            await application.start()
            register = asyncio.create_task(
                _register_webhook(application, settings.webhook_url, secret, dispatcher)
            )
            replaying = asyncio.create_task(replay_left_over(application, dispatcher))
            if background is not None:
                await background.start()
            log.warning("Kindred webhook worker listening on port %d", settings.http_port)
            try:
                await _serve(server, stop, ready)
                await dispatcher.drain(drain_timeout)
            finally:
                if background is not None:
                    await background.stop()
                for task in (register, replaying):
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
                # No deleteWebhook: the other workers keep serving the same URL.
                await application.stop()
                if isinstance(application, KindredApplication) and application.inbox is not None:
                    await application.inbox.aclose()
    finally:
        if redis is not None:
            await redis.aclose()


async def run_ops_server(
    settings: Settings,
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    host: str = "0.0.0.0",
    ready: asyncio.Event | None = None,
) -> None:
    """/healthz and /metrics alone (the scheduler role), until `stop`."""
    redis = _redis_client(settings)
    health = HealthChecks(runtime.engine, redis, settings.rasa_url)
    app = create_asgi_app(health, nlu_backend=runtime.nlu.backend)
    try:
        await _serve(_Server(_uvicorn_config(app, host, settings.http_port)), stop, ready)
    finally:
        if redis is not None:
            await redis.aclose()
