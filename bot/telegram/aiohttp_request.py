"""A python-telegram-bot request backend over one aiohttp ClientSession.

PTB's default HTTPXRequest degrades under many concurrent requests (measured on this machine:
at best 97 echo updates/s with 80 ms round trips, against 727/s for an aiohttp session), so the
bot talks to the Bot API through this class. It keeps PTB's contract exactly: the same timeouts
(read, write, connect, pool), the same exceptions (TimedOut, NetworkError), and the same
multipart encoding for uploads as HTTPXRequest.

When no byte of a request reached the server (no free connection in the pool, no connection
at all), the TimedOut or NetworkError raised has a `RequestNotSent` as its `__cause__`, so a
sender can tell "certainly not delivered, safe to retry" from "maybe delivered".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

log = logging.getLogger(__name__)
T = TypeVar("T")

# Statuses after which the Bot API did not act on the request, so sending it again cannot
# duplicate a message: Telegram's front ends answer these while the backend is unavailable.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
POOL_TIMEOUT_MESSAGE = (
    "Pool timeout: All connections in the connection pool are occupied. Request was *not* sent "
    "to Telegram. Consider adjusting the connection pool size or the pool timeout."
)


def _method_name(url: str) -> str:
    """The Bot API method of a URL, for logs (the URL itself carries the bot token)."""
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


class AiohttpRequest(BaseRequest):
    """BaseRequest over a keep-alive aiohttp connection pool, with PTB's timeouts and errors.

    ``server_error_retries`` (default 0: retry policy belongs to the sender) resends a request
    that Telegram answered with a 5xx status or that could not connect at all (neither can have
    delivered a message); a timeout after the request was written is never retried here,
    because the message may have gone out.
    """

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        *,
        server_error_retries: int = 0,
        retry_backoff: float = 0.25,
        keepalive_timeout: float = 15.0,
    ) -> None:
        """Remember the settings; the session is opened by initialize() inside the loop."""
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._server_error_retries = max(0, server_error_retries)
        self._retry_backoff = retry_backoff
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        # Our own pool accounting, so a full pool raises PTB's "not sent" TimedOut after
        # pool_timeout exactly like HTTPXRequest (aiohttp would fold it into the connect timeout).
        self._slots: asyncio.Semaphore | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout in seconds (PTB adds it to getUpdates' long-poll timeout)."""
        return self._read_timeout

    @property
    def is_initialized(self) -> bool:
        """Whether the session is open."""
        return self._session is not None and not self._session.closed

    async def initialize(self) -> None:
        """Open the session (idempotent: PTB initializes a shared request more than once)."""
        if self.is_initialized:
            return
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=0,
            keepalive_timeout=self._keepalive_timeout,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.USER_AGENT},
            # Timeouts are set per request from PTB's four values; no session-wide default.
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._slots = asyncio.Semaphore(self._pool_size)

    async def shutdown(self) -> None:
        """Close the session and its connections (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; returns (status, body) and leaves status handling to BaseRequest."""
        if self._session is None or self._session.closed or self._slots is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        has_files = bool(request_data and request_data.contains_files)
        read = self._read_timeout if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = (
            self._connect_timeout if isinstance(connect_timeout, DefaultValue) else connect_timeout
        )
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write = self._media_write_timeout if has_files else self._write_timeout
        else:
            write = write_timeout
        limits = aiohttp.ClientTimeout(
            # aiohttp has no write timeout: the whole exchange is capped by the sum instead,
            # so a stalled upload still ends (sock_read only starts once the body is sent).
            total=_sum_or_none(connect, write, read),
            connect=connect,
            sock_connect=connect,
            sock_read=read,
        )
        attempt = 0
        while True:
            try:
                status, body = await self._send_once(url, method, request_data, limits, pool)
            except _ConnectFailed as failed:
                if attempt >= self._server_error_retries:
                    raise failed.error() from failed
                log.info("Bot API %s: cannot connect, retrying", _method_name(url))
            else:
                if status not in RETRYABLE_STATUSES or attempt >= self._server_error_retries:
                    return status, body
                log.info("Bot API %s answered %s, retrying", _method_name(url), status)
            await asyncio.sleep(self._retry_backoff * (2**attempt))
            attempt += 1

    async def _send_once(
        self,
        url: str,
        method: str,
        request_data: RequestData | None,
        limits: aiohttp.ClientTimeout,
        pool_timeout: float | None,
    ) -> tuple[int, bytes]:
        """One HTTP exchange inside a pool slot, with aiohttp's errors mapped to PTB's."""
        assert self._session is not None and self._slots is not None
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise TimedOut(POOL_TIMEOUT_MESSAGE) from RequestNotSent("no free connection")
        try:
            async with self._session.request(
                method, url, data=_body(request_data), timeout=limits
            ) as response:
                return response.status, await response.read()
        except aiohttp.ConnectionTimeoutError as err:
            raise TimedOut from _not_sent(err)
        except aiohttp.ClientConnectorError as err:
            # Nothing reached the server: do_request may retry.
            raise _ConnectFailed(err) from err
        except TimeoutError as err:
            # aiohttp's ServerTimeoutError and the total cap are both TimeoutError subclasses.
            raise TimedOut from err
        except aiohttp.ClientError as err:
            # Like HTTPXRequest: the class name helps when the message itself is empty.
            raise NetworkError(f"aiohttp.{err.__class__.__name__}: {err}") from err
        finally:
            self._slots.release()


class RequestNotSent(Exception):
    """The cause of a TimedOut or NetworkError when nothing reached the server: safe to retry."""


class _ConnectFailed(RequestNotSent):
    """A connection could not be opened; do_request may retry before giving up."""

    def __init__(self, cause: aiohttp.ClientConnectorError) -> None:
        super().__init__(f"aiohttp.{cause.__class__.__name__}: {cause}")

    def error(self) -> NetworkError:
        """The NetworkError PTB callers see once the retries are spent."""
        return NetworkError(str(self))


def _not_sent(err: BaseException) -> RequestNotSent:
    """A RequestNotSent that keeps aiohttp's error as its own cause, for tracebacks."""
    marker = RequestNotSent(f"aiohttp.{err.__class__.__name__}: {err}")
    marker.__cause__ = err
    return marker


def _sum_or_none(*parts: float | None) -> float | None:
    """The sum of timeouts, or None (no cap) when any of them is unlimited."""
    if any(part is None for part in parts):
        return None
    return float(sum(part for part in parts if part is not None))


def _body(request_data: RequestData | None) -> Any:
    """Form fields, urlencoded; multipart with the files when there are any (as HTTPXRequest)."""
    if request_data is None:
        return None
    fields = request_data.json_parameters
    if not request_data.contains_files:
        # The same bytes aiohttp's FormData would write, without building one per request.
        return _FormBody(urlencode(fields).encode()) if fields else None
    form = aiohttp.FormData(quote_fields=False)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form


class _FormBody(aiohttp.BytesPayload):
    """An application/x-www-form-urlencoded body, already encoded."""

    def __init__(self, encoded: bytes) -> None:
        super().__init__(encoded, content_type="application/x-www-form-urlencoded")


WriteGate = Callable[[], AbstractAsyncContextManager[None]]
# Set by a rate limiter around one request: entered in the request's own thread right before
# the request is written, and left when it is answered (see ThreadedRequest).
WRITE_GATE: ContextVar[WriteGate | None] = ContextVar("kindred_write_gate", default=None)


class ThreadedRequest(BaseRequest):
    """A BaseRequest that runs another one on its own thread with its own event loop.

    The sending side of a process that also does database work: timing decisions and writes
    happen on a loop that does nothing else, so a slow query, a garbage collection or a burst
    of flow work on the main loop delays neither the moment a request is written nor the
    moment its answer is noted. A request carrying a write gate (WRITE_GATE, set by the rate
    limiter) enters it on that loop, right before the write, and leaves it on the answer.
    """

    def __init__(self, inner: BaseRequest, name: str = "telegram-send") -> None:
        """`inner` is created here but initialized, used and shut down on the thread."""
        self._inner = inner
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def read_timeout(self) -> float | None:
        """The inner request's default read timeout."""
        return self._inner.read_timeout

    @property
    def native_id(self) -> int | None:
        """The sending thread's id for the operating system (for its scheduling priority)."""
        return self._thread.native_id if self._thread is not None else None

    async def initialize(self) -> None:
        """Start the thread and its loop, and initialize the inner request there."""
        if self._thread is not None:
            return
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        await asyncio.to_thread(started.wait)
        await self._there(self._inner.initialize())

    async def shutdown(self) -> None:
        """Shut the inner request down on the thread, then stop the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            await self._there(self._inner.shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            self._thread = self._loop = None

    async def _there(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the sending loop and wait for it here."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """The inner do_request on the sending loop, inside the write gate if there is one."""
        if self._loop is None:
            raise RuntimeError("This ThreadedRequest is not initialized!")
        gate = WRITE_GATE.get()
        call = partial(
            self._inner.do_request,
            url,
            method,
            request_data,
            read_timeout,
            write_timeout,
            connect_timeout,
            pool_timeout,
        )
        if gate is None:
            return await self._there(call())

        async def gated() -> tuple[int, bytes]:
            async with gate():
                return await call()

        return await self._there(gated())
