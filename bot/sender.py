"""The one way the bot sends anything to Telegram: rate-limited, retried when safe, never twice.

Limits. Telegram allows about 30 messages a second per bot and one a second per chat, measured
where the messages arrive. One process: `KindredRateLimiter`, PTB's AIORateLimiter (groups,
RetryAfter) with an even pace a little under 30 a second, a window that never lets a request
out while 30 are in flight or were answered within the last second (so no delay on the way can
make Telegram count 31 in a second: see _SendWindow), and a per-chat gate for private chats too
(PTB only spaces groups), a second from the previous answer. With `build_bot(own_thread=True)`
the pace and the window are applied on a thread of its own, right before each write
(ThreadedRequest), so the database work of the caller's loop cannot bunch the writes or starve
them. Several processes: `RedisRateLimiter`, the `limits` library's moving window in Redis shared
by every process, behind the same PTB interface.

Retries and duplicates. A message is retried only when Telegram certainly did not act on it: a
429 (after retry_after), an HTTP 5xx answer, or a request that never left this machine (no
connection, no free connection in the pool). When the request was written and the answer was
lost (a read timeout, a dropped connection), Telegram may have delivered it; retrying could send
it twice, so the sender raises SendUncertain and the caller records it as unconfirmed, never
resending. At most once, because a duplicate message to someone in recovery is worse than one
gentle check-in that does not arrive.

Errors: SendError -> RecipientGone (blocked the bot, account gone), SendRejected (Telegram
refused the request itself), SendFailed (still failing after the retries; `delivered` messages
of the replies did go out), SendUncertain (maybe delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextvars import ContextVar
from datetime import timedelta
from functools import lru_cache, partial
from typing import Any, Protocol

import httpx
import stamina
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import AIORateLimiter, BaseRateLimiter, ExtBot
from telegram.request import BaseRequest

from bot.rendering import split_for_telegram
from bot.telegram.aiohttp_request import (
    WRITE_GATE,
    AiohttpRequest,
    RequestNotSent,
    ThreadedRequest,
)
from flows.engine import Button, Reply

__all__ = [
    "KindredRateLimiter",
    "RecipientGone",
    "RedisRateLimiter",
    "SendError",
    "SendFailed",
    "SendRejected",
    "SendUncertain",
    "Sender",
    "TelegramSender",
    "before_first_write",
    "build_bot",
    "keyboard",
    "make_rate_limiter",
    "run_before_write",
    "send_replies",
]

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024
# Telegram's limits, counted where the messages arrive: 30 a second per bot, 1 a second per chat.
TELEGRAM_PER_SECOND = 30
# The even pace, a little under the limit so that the window guard (_SendWindow) rarely waits.
MESSAGES_PER_SECOND = 29.5
# The before-write hook (a commit) starts this long before its send slot.
HOOK_LEAD_S = 0.1
# Sending from a thread: requests marked by the before-write hook and not yet answered.
READY_AHEAD = 8
# Processes share the window but not their timing, so their sends bunch up more: more margin.
REDIS_MESSAGES_PER_SECOND = 28
# A second from the answer to the previous message: Telegram counted that one before answering.
CHAT_INTERVAL_S = 1.01
# Float and clock fuzz on top of the one-second window.
WINDOW_MARGIN_S = 0.005
SEND_ENDPOINTS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVoice",
        "sendAudio",
        "sendVideo",
        "sendAnimation",
        "sendSticker",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
    }
)


class SendError(Exception):
    """Root of the sender's errors."""

    def __init__(self, message: str, delivered: int = 0) -> None:
        """`delivered`: how many messages of the replies went out before the error."""
        super().__init__(message)
        self.delivered = delivered


class RecipientGone(SendError):
    """The person blocked the bot or their account is gone (403, chat not found)."""


class SendRejected(SendError):
    """Telegram refused the request itself (400): sending it again would fail again."""


class SendFailed(SendError):
    """Still failing after the retries, and certainly not delivered (the last message)."""


class SendUncertain(SendError):
    """The request was written and the answer lost: Telegram may have delivered it."""


class Sender(Protocol):
    """Sends replies to one chat, in order."""

    async def send(self, chat_id: int, replies: tuple[Reply, ...]) -> None:
        """Send every reply; raise a SendError when they could not all be sent."""
        ...


# --- the last moment before a request is written ----------------------------------------------

BeforeWrite = Callable[[], Awaitable[None]]
_BEFORE_WRITE: ContextVar[BeforeWrite | None] = ContextVar("kindred_before_write", default=None)


@contextlib.contextmanager
def before_first_write(hook: BeforeWrite) -> Any:
    """Run `hook` right before each send request of this task is written (after rate limits).

    The follow-up deliverer marks a row as being sent here: after waiting for the limiter, so a
    process killed while queued leaves nothing ambiguous behind, and before the write, so a
    process killed after it never lets another process send the same follow-up again.
    """
    token = _BEFORE_WRITE.set(hook)
    try:
        yield
    finally:
        _BEFORE_WRITE.reset(token)


async def run_before_write() -> None:
    """Call this task's before-write hook, if any (for senders that are not TelegramSender)."""
    hook = _BEFORE_WRITE.get()
    if hook is not None:
        await hook()


def _private_chat(data: dict[str, Any]) -> int | None:
    """The chat id when the request targets a private chat (positive id)."""
    raw = data.get("chat_id")
    try:
        chat_id = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    return chat_id if chat_id is not None and chat_id > 0 else None


RequestCallback = Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]]


class _ChatGate:
    """Spaces requests to one chat by `interval`, measured from the answer to the previous one.

    Telegram counts a message before it answers, so once the answer is here the message has
    been counted; a second after that, the next one cannot fall into the same second however
    the two requests are delayed on the way. (aiolimiter would measure from when a slot was
    acquired, before the waits for the overall limit.) Callers hold the chat's lock from the
    wait until the answer, so there is never more than one request in flight per chat.
    """

    def __init__(self, interval: float, max_chats: int = 4096) -> None:
        self._interval = interval
        self._max_chats = max_chats
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}

    def lock(self, chat_id: int) -> asyncio.Lock:
        """The chat's lock, held from its wait until its request is answered."""
        if len(self._locks) > self._max_chats:
            horizon = time.monotonic() - self._interval
            for key in [k for k, v in self._last.items() if v < horizon]:
                if not self._locks[key].locked():
                    del self._locks[key], self._last[key]
        return self._locks.setdefault(chat_id, asyncio.Lock())

    async def wait(self, chat_id: int) -> None:
        """Sleep until the chat may receive the next message."""
        last = self._last.get(chat_id)
        if last is not None:
            await _sleep_until(last + self._interval)

    def written(self, chat_id: int) -> None:
        """Note that a request to the chat is being written now."""
        self._last[chat_id] = time.monotonic()

    def answered(self, chat_id: int) -> None:
        """Note that the request was answered (or failed) now: the interval starts here."""
        self._last[chat_id] = time.monotonic()


class _SendWindow:
    """Never more than `limit` requests in flight or answered within the last `period` seconds.

    This is what makes a 429 impossible whatever the timing on the way. Telegram (and the fake)
    count a message when it arrives, which is after we write it and before we read the answer.
    When a request is let in, every earlier one that could still be counted in the same second
    as its arrival is either in flight or was answered less than `period` ago; fewer than
    `limit` of them means at most `limit` arrivals in any second. A pacer alone only bounds the
    write times: a 30th-of-a-second grid tolerates a few tens of milliseconds of difference in
    delay between writes a second apart, and a busy machine (event loop, GC, scheduler)
    exceeds that now and then. Waits here cost speed only when answers come back slowly.
    """

    def __init__(
        self,
        limit: int = TELEGRAM_PER_SECOND,
        period: float = 1.0 + WINDOW_MARGIN_S,
    ) -> None:
        self._limit = limit
        self._period = period
        self._in_flight = 0
        self._answered: deque[float] = deque()  # answer times, oldest first
        self._turn = asyncio.Lock()  # first come, first served
        self._answer = asyncio.Event()

    def _expire(self, now: float) -> None:
        while self._answered and self._answered[0] <= now - self._period:
            self._answered.popleft()

    async def enter(self) -> None:
        """Wait until one more request fits, and count it as in flight."""
        async with self._turn:
            while True:
                now = time.monotonic()
                self._expire(now)
                excess = self._in_flight + len(self._answered) - self._limit
                if excess < 0:
                    self._in_flight += 1
                    return
                if excess < len(self._answered):
                    # Enough answers will leave the window by themselves.
                    await _sleep_until(self._answered[excess] + self._period)
                else:
                    self._answer.clear()
                    await self._answer.wait()

    def leave(self) -> None:
        """The request was answered, failed or gave up: it counts for `period` from now."""
        self._in_flight -= 1
        self._answered.append(time.monotonic())
        self._answer.set()

    @contextlib.asynccontextmanager
    async def entry(self) -> AsyncIterator[None]:
        """Inside: the request may be written."""
        await self.enter()
        try:
            yield
        finally:
            self.leave()


class _Pacer:
    """Evenly spaced send slots on a fixed grid (virtual scheduling, as in GCRA).

    A one-token aiolimiter bucket spaces each send from the previous one's actual start, so
    every late wake-up of a busy event loop is lost for good (measured: 26.8/s for a 29/s
    setting). Here each caller reserves the next slot on a grid, so a late wake-up costs
    that send only. With `catch_up` (when a _SendWindow guards the limit) a late send still
    goes: the window keeps the catch-up under the limit. Without it, a send that wakes more
    than half a slot late takes a fresh slot instead of going out close behind the previous
    one, so any second holds at most `per_second` + 1 slots.
    """

    def __init__(self, per_second: float, catch_up: bool = False) -> None:
        self._interval = 1 / per_second
        self._catch_up = catch_up
        self._next = 0.0

    def _reserve(self) -> float:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot

    async def wait(self, before: BeforeWrite | None = None, lead: float = 0.0) -> None:
        """Sleep until this caller's slot; run `before` about `lead` seconds ahead of it.

        The before-write hook (a database commit) runs just ahead of the slot rather than
        between the slot and the write, where its varying duration would bunch arrivals.
        """
        slot = self._reserve()
        if before is not None:
            await _sleep_until(slot - lead)
            await before()
        while True:
            await _sleep_until(slot)
            if self._catch_up or time.monotonic() - slot <= self._interval / 2:
                return
            slot = self._reserve()


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class _MovingWindow:
    """At most `amount` sends in any second, counted when each is written (`limits`)."""

    def __init__(self, amount: int, storage: Any, namespace: str, key: str = "bot") -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import MovingWindowRateLimiter

        self._item = RateLimitItemPerSecond(amount, 1, namespace=namespace)
        self._limiter = MovingWindowRateLimiter(storage)
        self._key = key
        self._spacing = 1 / amount

    async def acquire(self, *identifiers: str) -> None:
        """Wait until the window has room for one more send, and take it."""
        keys = identifiers or (self._key,)
        while not await self._limiter.hit(self._item, *keys):
            stats = await self._limiter.get_window_stats(self._item, *keys)
            # Jittered, so waiters (in any process) do not all hit the window at one instant.
            wait = stats.reset_time - time.time() + random.uniform(0, self._spacing)
            await asyncio.sleep(min(1.0, max(0.005, wait)))


class KindredRateLimiter(AIORateLimiter):
    """PTB's AIORateLimiter (groups, RetryAfter) with an even overall pace and a per-chat gate.

    PTB's overall bucket is switched off: aiolimiter's default lets 30 through at once and 30
    more in the same second, and a one-token bucket drifts below the rate on a busy loop. The
    overall pace here is a drift-free pacer on a fixed grid (see _Pacer), and the limit itself
    is held by a window over requests in flight and recently answered (see _SendWindow): no
    timing on the way can make Telegram count more than 30 of ours in a second.
    """

    def __init__(
        self,
        messages_per_second: float = MESSAGES_PER_SECOND,
        chat_interval: float = CHAT_INTERVAL_S,
        max_retries: int = 2,
        limit_per_second: int = TELEGRAM_PER_SECOND,
    ) -> None:
        """Evenly paced sends, never more than `limit_per_second` counted in any second."""
        super().__init__(overall_max_rate=0, overall_time_period=0, max_retries=max_retries)
        self._pacer = _Pacer(messages_per_second, catch_up=True)
        self._window = _SendWindow(limit_per_second)
        self._chats = _ChatGate(chat_interval)
        self._ready: asyncio.Semaphore | None = None  # set when sending from a thread

    def send_from_thread(self, ready_ahead: int = READY_AHEAD) -> None:
        """The bot's request is a ThreadedRequest: pace and count there, right at the write.

        The before-write hook still runs here, on the caller's loop, for at most `ready_ahead`
        requests not yet answered, so the sending thread has work ready when the caller's loop
        is busy and only those few are marked before their turn.
        """
        self._ready = asyncio.Semaphore(ready_ahead)

    @contextlib.asynccontextmanager
    async def _write_gate(self) -> AsyncIterator[None]:
        """On the sending thread's loop: the pace, then the window until the answer."""
        await self._pacer.wait()
        async with self._window.entry():
            yield

    async def process_request(
        self,
        callback: RequestCallback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Per-chat gate, the overall pace, the before-write hook, the window, the request."""
        if data.get("chat_id") is None:  # getUpdates, getMe, answerCallbackQuery: not limited
            return await super().process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        sends = endpoint in SEND_ENDPOINTS
        chat_id = _private_chat(data) if sends else None

        async def request(*a: Any, **kw: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
            if chat_id is None:
                return await callback(*a, **kw)
            self._chats.written(chat_id)
            try:
                return await callback(*a, **kw)
            finally:
                self._chats.answered(chat_id)

        async def write(*a: Any, **kw: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
            if self._ready is None:
                await self._pacer.wait(run_before_write if sends else None, HOOK_LEAD_S)
                async with self._window.entry():
                    return await request(*a, **kw)
            async with self._ready:
                if sends:
                    await run_before_write()
                token = WRITE_GATE.set(self._write_gate)
                try:
                    return await request(*a, **kw)
                finally:
                    WRITE_GATE.reset(token)

        if chat_id is None:
            return await super().process_request(
                write, args, kwargs, endpoint, data, rate_limit_args
            )
        async with self._chats.lock(chat_id):
            await self._chats.wait(chat_id)
            return await super().process_request(
                write, args, kwargs, endpoint, data, rate_limit_args
            )


def _retry_after_seconds(exc: RetryAfter) -> float:
    # PTB's own limiter reads the private timedelta too: the public property warns or changes
    # type depending on PTB_TIMEDELTA.
    return float(exc._retry_after.total_seconds())


class RedisRateLimiter(BaseRateLimiter[int]):
    """Limits shared by every process through Redis (the `limits` library's moving window)."""

    def __init__(
        self,
        redis_url: str,
        messages_per_second: int = REDIS_MESSAGES_PER_SECOND,
        chat_interval: float = CHAT_INTERVAL_S,
        max_retries: int = 2,
        namespace: str = "kindred-telegram",
    ) -> None:
        """Nothing connects until the first request (or initialize())."""
        from limits.aio.storage import RedisStorage
        from redis.asyncio import ConnectionPool, Redis

        plain = redis_url.removeprefix("async+")
        # One pool for the limiter and our own key, closed in shutdown() (PTB calls it).
        self._pool = ConnectionPool.from_url(plain)
        self._redis = Redis(connection_pool=self._pool)
        options: dict[str, Any] = {"connection_pool": self._pool}
        self._storage = RedisStorage(f"async+{plain}", implementation="redispy", **options)
        self._window = _MovingWindow(messages_per_second, self._storage, namespace)
        # The moving window has whole-second granularity; the chat gate adds the margin locally.
        self._per_chat = _MovingWindow(1, self._storage, namespace)
        # Local pacing: one process never bursts, so arrivals stay spread out.
        self._pacer = _Pacer(messages_per_second)
        self._chats = _ChatGate(chat_interval)
        self._max_retries = max_retries
        self._pause_key = f"{namespace}:retry-after-until"

    async def initialize(self) -> None:
        """Fail early when Redis is unreachable."""
        if not await self._storage.check():
            raise ConnectionError("Redis is not reachable for the rate limiter")

    async def shutdown(self) -> None:
        """Close the Redis connections."""
        await self._pool.aclose()

    async def _wait_for_flood_pause(self) -> None:
        """After a 429 in any process, every process waits out retry_after."""
        until = await self._redis.get(self._pause_key)
        if until is not None:
            delay = float(until) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def process_request(
        self,
        callback: RequestCallback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Shared per-chat and overall windows, honouring RetryAfter across processes."""
        if data.get("chat_id") is None:
            return await callback(*args, **kwargs)
        chat_id = _private_chat(data) if endpoint in SEND_ENDPOINTS else None
        retries = rate_limit_args or self._max_retries
        for attempt in range(retries + 1):
            await self._wait_for_flood_pause()
            try:
                if chat_id is None:
                    return await self._send(callback, args, kwargs, endpoint)
                async with self._chats.lock(chat_id):
                    await self._chats.wait(chat_id)
                    await self._per_chat.acquire("chat", str(chat_id))
                    return await self._send(callback, args, kwargs, endpoint, chat_id)
            except RetryAfter as exc:
                seconds = _retry_after_seconds(exc) + 0.1
                await self._redis.set(
                    self._pause_key, str(time.time() + seconds), px=int(seconds * 1e3)
                )
                if attempt == retries:
                    raise
                log.info("rate limit hit; all processes wait %.1f s", seconds)
                await asyncio.sleep(seconds)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        callback: RequestCallback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        chat_id: int | None = None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        await self._pacer.wait()
        await self._window.acquire()
        if endpoint in SEND_ENDPOINTS:
            await run_before_write()
        if chat_id is None:
            return await callback(*args, **kwargs)
        self._chats.written(chat_id)
        try:
            return await callback(*args, **kwargs)
        finally:
            self._chats.answered(chat_id)


def make_rate_limiter(redis_url: str | None) -> BaseRateLimiter[int]:
    """Redis-backed when several processes send (REDIS_URL set), else in-process."""
    if redis_url:
        return RedisRateLimiter(redis_url)
    return KindredRateLimiter()


# --- sending replies --------------------------------------------------------------------------


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Inline buttons for a reply (callback data is the flow's payload)."""
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
            for row in reply.buttons
        ]
    )


@lru_cache(maxsize=1024)
def keyboard_json(buttons: tuple[tuple[Button, ...], ...]) -> str:
    """A reply's inline keyboard as the Bot API's reply_markup JSON (flows offer few distinct)."""
    rows = [[{"text": b.label, "callback_data": b.payload} for b in row] for row in buttons]
    return json.dumps({"inline_keyboard": rows}, ensure_ascii=False, separators=(",", ":"))


async def send_text(bot: Bot, chat_id: int, text: str, markup: str | None) -> None:
    """sendMessage (HTML) through the bot's rate limiter, without parsing the Message sent back.

    Nothing here reads that Message, and building it (with its keyboard) cost as much CPU as
    the rest of the send together; errors are PTB's own, as for bot.send_message.
    """
    data: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": ParseMode.HTML}
    if markup is not None:
        data["reply_markup"] = markup
    await bot._post("sendMessage", data)


SendCall = Callable[[], Awaitable[object]]


def _requests(bot: Bot, chat_id: int, replies: tuple[Reply, ...]) -> list[SendCall]:
    """One call per Telegram message: long texts split, buttons on the last part."""
    calls: list[SendCall] = []
    for reply in replies:
        if reply.document is not None:
            name, content = reply.document
            caption_text = reply.text[:CAPTION_LIMIT]
            calls.append(
                partial(
                    bot.send_document,
                    chat_id,
                    content,
                    filename=name,
                    caption=caption_text,
                    parse_mode=ParseMode.HTML,
                )
            )
            continue
        if reply.image is not None:
            # A caption holds at most 1024 characters; a longer text follows the photo instead.
            caption = reply.text if len(reply.text) <= CAPTION_LIMIT else None
            markup = keyboard(reply) if caption is not None else None
            calls.append(
                partial(
                    bot.send_photo,
                    chat_id,
                    reply.image,
                    caption=caption,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup,
                )
            )
            if caption is not None:
                continue
        parts = split_for_telegram(reply.text)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            buttons = keyboard_json(reply.buttons) if last and reply.buttons else None
            calls.append(partial(send_text, bot, chat_id, part, buttons))
    return calls


async def send_replies(bot: object, chat_id: int, replies: tuple[Reply, ...]) -> None:
    """Send replies in order, once each, through the bot's rate limiter (no retries here)."""
    assert isinstance(bot, Bot)
    for call in _requests(bot, chat_id, replies):
        await call()


class _Retry(Exception):
    """Internal: certainly not delivered, safe to try again (after `wait` seconds if given)."""

    def __init__(self, cause: TelegramError, wait: float | None = None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.wait = wait


def classify(exc: TelegramError) -> SendError | _Retry:
    """What a Telegram error means for this message: gone, refused, retry, or maybe sent."""
    message = getattr(exc, "message", str(exc))
    if isinstance(exc, Forbidden):
        return RecipientGone(message)
    if isinstance(exc, BadRequest):
        lowered = message.lower()
        if "chat not found" in lowered or "user is deactivated" in lowered:
            return RecipientGone(message)
        return SendRejected(message)
    if isinstance(exc, ChatMigrated | InvalidToken):
        return SendRejected(message)
    if isinstance(exc, RetryAfter):
        return _Retry(exc, _retry_after_seconds(exc) + 0.1)
    cause = exc.__cause__
    if isinstance(exc, TimedOut):
        # Pool and connect timeouts happen before a byte is written; read/write ones after.
        if isinstance(cause, httpx.PoolTimeout | httpx.ConnectTimeout | RequestNotSent):
            return _Retry(exc)
        return SendUncertain(message)
    if isinstance(exc, NetworkError):
        if cause is None or isinstance(cause, TelegramError):
            return _Retry(exc)  # an HTTP 5xx answer: Telegram says it did not complete it
        if isinstance(cause, httpx.ConnectError | RequestNotSent):
            return _Retry(exc)
        return SendUncertain(message)
    return SendUncertain(message)


def _backoff(exc: Exception) -> bool | float:
    """stamina hook: retry _Retry, waiting retry_after when Telegram gave one."""
    if isinstance(exc, _Retry):
        return exc.wait if exc.wait is not None else True
    return False


class TelegramSender:
    """Sender over a PTB bot whose rate limiter is ours (KindredRateLimiter or RedisRateLimiter)."""

    def __init__(
        self,
        bot: Bot,
        attempts: int = 4,
        wait_initial: float = 0.5,
        wait_max: float = 8.0,
        timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        """Retry a certainly-undelivered message `attempts` times in all, with backoff."""
        self._bot = bot
        self._attempts = attempts
        self._wait_initial = wait_initial
        self._wait_max = wait_max
        self._timeout = timeout
        limiter = getattr(bot, "rate_limiter", None)
        # Without our limiter nobody calls the before-write hook: call it here instead.
        self._hook_here = not isinstance(limiter, KindredRateLimiter | RedisRateLimiter)

    @property
    def bot(self) -> Bot:
        """The PTB bot it sends with."""
        return self._bot

    async def send(self, chat_id: int, replies: tuple[Reply, ...]) -> None:
        """Send each message once, in order; see the module docstring for what raises."""
        for delivered, call in enumerate(_requests(self._bot, chat_id, replies)):
            try:
                await self._send_one(call)
            except SendError as exc:
                exc.delivered = delivered
                raise

    async def _send_one(self, call: SendCall) -> None:
        # Nearly every message goes out at the first try: the retry machinery is only set up
        # once one has certainly not been delivered.
        try:
            await self._attempt(call)
            return
        except _Retry as first:
            failed = first
        if self._attempts <= 1:
            raise SendFailed(f"gave up: {failed.cause.message}") from failed.cause
        await asyncio.sleep(failed.wait if failed.wait is not None else self._wait_initial)
        try:
            async for attempt in stamina.retry_context(
                on=_backoff,
                attempts=self._attempts - 1,
                wait_initial=self._wait_initial,
                wait_max=self._wait_max,
                timeout=self._timeout,
            ):
                with attempt:
                    await self._attempt(call)
        except _Retry as exc:
            raise SendFailed(f"gave up: {exc.cause.message}") from exc.cause

    async def _attempt(self, call: SendCall) -> None:
        """One try: a certain non-delivery raises _Retry, anything else a SendError."""
        try:
            if self._hook_here:
                await run_before_write()
            await call()
        except TelegramError as exc:
            raise classify(exc) from exc


def build_bot(
    token: str,
    api_base: str,
    rate_limiter: BaseRateLimiter[int] | None = None,
    connection_pool_size: int = 16,
    read_timeout: float = 10.0,
    own_thread: bool = False,
) -> ExtBot[Any]:
    """A bot for a process that sends but does not poll (the scheduler worker, benchmarks).

    `own_thread`: requests are written from a thread of their own (ThreadedRequest), where
    KindredRateLimiter paces and counts them, away from this loop's database work.
    """
    base = api_base.rstrip("/")
    limiter = rate_limiter if rate_limiter is not None else KindredRateLimiter()
    request: BaseRequest = AiohttpRequest(
        connection_pool_size=connection_pool_size,
        connect_timeout=10.0,
        read_timeout=read_timeout,
        write_timeout=10.0,
        pool_timeout=10.0,
    )
    if own_thread:
        request = ThreadedRequest(request)
        if isinstance(limiter, KindredRateLimiter):
            limiter.send_from_thread()
    return ExtBot(
        token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=request,
        rate_limiter=limiter,
    )
