"""RasaInterpreter: a Rasa server over HTTP, with a timeout, a circuit breaker and a fallback.

Errors tree:

    NluError            anything that kept Rasa from answering this message
    ├── NluUnavailable  timeout, refused or reset connection, 5xx, circuit open
    └── NluBadResponse  an answer that is not a /model/parse result (4xx such as a wrong
                        token, a body that is not JSON, JSON of the wrong shape)

`RasaInterpreter.parse` never raises these: it answers through the fallback interpreter
instead, records why in `stats` and in `Understanding.extras["fallback_reason"]`.
The message text is never logged, and the auth token is masked in httpx's request log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import Any, Literal

import httpx

from nlu.understanding import Interpreter, Understanding


class NluError(Exception):
    """Rasa could not answer this message; `reason` is a short, stable label for metrics."""

    reason: str = "error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class NluUnavailable(NluError):
    """Rasa is slow, down, failing (5xx) or the circuit breaker is open."""

    reason = "unavailable"


class NluBadResponse(NluError):
    """Rasa answered, but not with a usable /model/parse result."""

    reason = "bad_response"


log = logging.getLogger("kindred.nlu.rasa")

BreakerState = Literal["closed", "open", "half_open"]

# Fallback reasons, each counted in RasaStats under the same name.
REASONS: tuple[str, ...] = ("timeout", "unavailable", "bad_response", "circuit_open", "error")


@dataclass
class RasaStats:
    """Counters for Prometheus: calls, Rasa answers, fallbacks and why, breaker trips."""

    requests: int = 0
    rasa_ok: int = 0
    fallbacks: int = 0
    timeout: int = 0
    unavailable: int = 0
    bad_response: int = 0
    circuit_open: int = 0
    error: int = 0
    breaker_opened: int = 0

    def record_fallback(self, reason: str) -> None:
        """Count one fallback and its reason."""
        self.fallbacks += 1
        if reason in REASONS:
            setattr(self, reason, getattr(self, reason) + 1)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after `reset_after`, one probe."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state, moving open -> half_open once `reset_after` has passed."""
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_after:
            self._state = "half_open"
            self._probing = False
            log.info("rasa circuit half-open: next request probes the server")
        return self._state

    def allow(self) -> bool:
        """Whether a request may go to Rasa now (in half-open, only the one probe may)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        """A request succeeded: close the circuit."""
        if self._state != "closed":
            log.info("rasa circuit closed: server answered the probe")
        self._state = "closed"
        self._failures = 0
        self._probing = False

    def record_failure(self) -> bool:
        """A request failed; returns True when this failure opened the circuit."""
        self._failures += 1
        if self._state == "half_open" or (
            self._state == "closed" and self._failures >= self.failure_threshold
        ):
            self._state = "open"
            self._opened_at = self._clock()
            self._probing = False
            log.warning(
                "rasa circuit open after %d consecutive failures; retry in %.0fs",
                self._failures,
                self.reset_after,
            )
            return True
        return False

    def release_probe(self) -> None:
        """The probe was cancelled before an outcome: let the next request probe instead."""
        self._probing = False


_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']*")


class _RedactTokenFilter(logging.Filter):
    """Masks `token=...` in httpx's own request log lines (it logs the full URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments in place; never drops a record."""
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", str(a)) if isinstance(a, httpx.URL) else a
                for a in record.args
            )
        return True


def _install_redaction() -> None:
    """Attach the token-masking filter to httpx's logger once."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactTokenFilter) for f in logger.filters):
        logger.addFilter(_RedactTokenFilter())


class RasaInterpreter:
    """Interpreter backed by a Rasa server's /model/parse; falls back when Rasa cannot answer."""

    def __init__(
        self,
        url: str,
        token: str | None,
        fallback: Interpreter,
        *,
        timeout: float = 0.8,
        failure_threshold: int = 3,
        reset_after: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.fallback = fallback
        self.timeout = timeout
        self.stats = RasaStats()
        self.breaker = CircuitBreaker(failure_threshold, reset_after, clock)
        self._params = {"token": token} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json"},
        )
        _install_redaction()

    @property
    def breaker_state(self) -> BreakerState:
        """The circuit breaker's state: closed, open or half_open."""
        return self.breaker.state

    async def parse(self, text: str) -> Understanding:
        """Understand one message through Rasa, or through the fallback when Rasa cannot."""
        self.stats.requests += 1
        if not self.breaker.allow():
            return await self._fall_back(text, "circuit_open")
        try:
            understanding = await self.parse_remote(text)
        except NluError as exc:
            if self.breaker.record_failure():
                self.stats.breaker_opened += 1
            return await self._fall_back(text, exc.reason, str(exc))
        except asyncio.CancelledError:
            self.breaker.release_probe()
            raise
        except Exception as exc:  # a bug must not leave a person unanswered
            log.error("rasa client failed unexpectedly: %s", type(exc).__name__)
            if self.breaker.record_failure():
                self.stats.breaker_opened += 1
            return await self._fall_back(text, "error", type(exc).__name__)
        self.breaker.record_success()
        self.stats.rasa_ok += 1
        return understanding

    async def parse_remote(self, text: str) -> Understanding:
        """Ask Rasa alone, bypassing breaker and fallback; raises NluError subclasses."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(
                    "/model/parse", params=self._params, json={"text": text}
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise NluUnavailable("rasa timed out", "timeout") from exc
        except httpx.HTTPError as exc:
            raise NluUnavailable(f"rasa unreachable: {type(exc).__name__}") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 500:
            raise NluUnavailable(f"rasa answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise NluBadResponse(f"rasa answered HTTP {response.status_code}")
        try:
            data: Any = json.loads(response.content)
        except ValueError as exc:
            raise NluBadResponse("rasa answered a body that is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("intent"), dict):
            raise NluBadResponse("rasa answered JSON without an intent object")
        try:
            understanding = Understanding.from_json(data, source="rasa")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise NluBadResponse("rasa answered JSON of the wrong shape") from exc
        log.debug("rasa parsed a message in %.1f ms", elapsed_ms)
        raw_name = data["intent"].get("name")
        if raw_name != understanding.intent.name:  # e.g. nlu_fallback, read as out_of_scope
            understanding = replace(understanding, extras={"rasa_intent": raw_name})
        return understanding

    async def healthy(self) -> bool:
        """Whether the server answers /status (token checked, model loaded) within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.get("/status", params=self._params)
        except (TimeoutError, httpx.HTTPError):
            return False
        if response.status_code != 200:
            return False
        try:
            return isinstance(json.loads(response.content), dict)
        except ValueError:
            return False

    async def _fall_back(self, text: str, reason: str, detail: str = "") -> Understanding:
        """Answer through the fallback interpreter and record why (never logging the text)."""
        self.stats.record_fallback(reason)
        log.info(
            "rasa fallback: %s %s(breaker %s)",
            reason,
            f"[{detail}] " if detail else "",
            self.breaker.state,
        )
        understanding = await self.fallback.parse(text)
        return replace(understanding, extras={**understanding.extras, "fallback_reason": reason})

    async def aclose(self) -> None:
        """Close the HTTP connection pool (not the fallback, which the caller owns)."""
        await self._client.aclose()

    async def __aenter__(self) -> RasaInterpreter:
        """Use as `async with RasaInterpreter(...) as nlu:`."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on exit."""
        await self.aclose()
