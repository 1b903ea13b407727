"""RasaInterpreter against httpx.MockTransport: shape, fallbacks, circuit breaker, token."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from nlu.rasa_client import (
    CircuitBreaker,
    NluBadResponse,
    NluError,
    NluUnavailable,
    RasaInterpreter,
)
from nlu.understanding import IntentScore, Understanding

RASA_URL = "http://rasa.test:5005"

CRAVING_JSON: dict[str, Any] = {
    "text": "i really want a drink right now",
    "intent": {"name": "craving", "confidence": 0.93},
    "intent_ranking": [
        {"name": "craving", "confidence": 0.93},
        {"name": "lapse", "confidence": 0.04},
    ],
    "entities": [
        {
            "entity": "substance",
            "value": "alcohol",
            "start": 16,
            "end": 21,
            "extractor": "RegexEntityExtractor",
        }
    ],
    "text_tokens": [[0, 1], [2, 8]],
}


class FakeFallback:
    """Stands in for the embedded interpreter and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def parse(self, text: str) -> Understanding:
        """Always understands a craving, with its own source."""
        self.calls += 1
        return Understanding(
            text=text,
            intent=IntentScore("craving", 0.5),
            source="embedded",
            extras={"model": "fake"},
        )


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a swappable function."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record, then answer."""
        self.requests.append(request)
        return self.answer(request)

    def transport(self) -> httpx.MockTransport:
        """A mock transport answering through this recorder."""
        return httpx.MockTransport(self)


def ok(request: httpx.Request) -> httpx.Response:
    """A healthy Rasa answer."""
    return httpx.Response(200, json=CRAVING_JSON)


def server_error(request: httpx.Request) -> httpx.Response:
    """Rasa failing."""
    return httpx.Response(500, json={"status": "failure"})


def refused(request: httpx.Request) -> httpx.Response:
    """Rasa down."""
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def fallback() -> FakeFallback:
    """A fresh fallback interpreter."""
    return FakeFallback()


@pytest.fixture
def clock() -> Clock:
    """A fresh clock."""
    return Clock()


@pytest.fixture
async def make(
    fallback: FakeFallback, clock: Clock
) -> AsyncIterator[Callable[..., RasaInterpreter]]:
    """Builds RasaInterpreters on a mock transport and closes them after the test."""
    made: list[RasaInterpreter] = []

    def build(handler: Any, token: str | None = "s3cret", **kwargs: Any) -> RasaInterpreter:
        interp = RasaInterpreter(
            RASA_URL + "/",
            token,
            fallback,
            transport=httpx.MockTransport(handler),
            clock=clock,
            **kwargs,
        )
        made.append(interp)
        return interp

    yield build
    for interp in made:
        await interp.aclose()


async def test_happy_path_parses_rasa_shape(make: Any, fallback: FakeFallback) -> None:
    rec = Recorder(ok)
    interp = make(rec)
    u = await interp.parse("i really want a drink right now")
    assert u.source == "rasa"
    assert u.intent == IntentScore("craving", 0.93)
    assert [s.name for s in u.intent_ranking] == ["craving", "lapse"]
    assert u.entity("substance") == "alcohol"
    assert u.entities[0].start == 16 and u.entities[0].end == 21
    assert "fallback_reason" not in u.extras
    assert u.to_json()["intent"] == {"name": "craving", "confidence": 0.93}
    assert fallback.calls == 0
    assert interp.stats.requests == 1 and interp.stats.rasa_ok == 1
    assert interp.stats.fallbacks == 0
    (req,) = rec.requests
    assert req.method == "POST"
    assert req.url.path == "/model/parse"
    assert req.read() == b'{"text":"i really want a drink right now"}'


async def test_token_is_a_query_parameter(make: Any) -> None:
    rec = Recorder(ok)
    interp = make(rec, token="s3cret")
    await interp.parse("hello")
    assert await interp.healthy()
    assert [r.url.params.get("token") for r in rec.requests] == ["s3cret", "s3cret"]
    assert all("s3cret" not in str(r.headers) for r in rec.requests)


async def test_no_token_sends_no_token_parameter(make: Any) -> None:
    rec = Recorder(ok)
    interp = make(rec, token=None)
    await interp.parse("hello")
    assert "token" not in rec.requests[0].url.params


async def test_timeout_falls_back(make: Any, fallback: FakeFallback) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    interp = make(slow)
    u = await interp.parse("i want to use")
    assert u.source == "embedded"
    assert u.extras == {"model": "fake", "fallback_reason": "timeout"}
    assert fallback.calls == 1
    assert interp.stats.fallbacks == 1 and interp.stats.timeout == 1
    assert interp.stats.rasa_ok == 0


async def test_overall_deadline_covers_a_slow_server(make: Any) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=CRAVING_JSON)

    interp = make(hang, timeout=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    u = await interp.parse("hello")
    assert loop.time() - started < 1.0
    assert u.extras["fallback_reason"] == "timeout"


async def test_server_error_falls_back(make: Any) -> None:
    interp = make(server_error)
    u = await interp.parse("hello")
    assert u.source == "embedded"
    assert u.extras["fallback_reason"] == "unavailable"
    assert interp.stats.unavailable == 1


async def test_connection_refused_falls_back(make: Any) -> None:
    interp = make(refused)
    u = await interp.parse("hello")
    assert u.extras["fallback_reason"] == "unavailable"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>proxy error</html>"),
        httpx.Response(200, content=b'{"text": "hi", "intent": '),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"text": "hi", "intent": None}),
        httpx.Response(200, json={"text": "hi", "intent": {"name": "greet", "confidence": "x"}}),
        httpx.Response(
            200, json={"intent": {"name": "greet"}, "entities": [{"entity": "x", "start": "a"}]}
        ),
        httpx.Response(401, json={"reason": "NotAuthenticated"}),
    ],
    ids=["html", "truncated", "list", "null-intent", "bad-confidence", "bad-entity", "401"],
)
async def test_garbage_falls_back(make: Any, response: httpx.Response) -> None:
    interp = make(lambda request: response)
    u = await interp.parse("hello")
    assert u.source == "embedded"
    assert u.extras["fallback_reason"] == "bad_response"
    assert interp.stats.bad_response == 1 and interp.stats.fallbacks == 1


async def test_parse_remote_raises_the_error_tree(make: Any) -> None:
    with pytest.raises(NluUnavailable):
        await make(server_error).parse_remote("hi")
    with pytest.raises(NluBadResponse):
        await make(lambda r: httpx.Response(200, content=b"nope")).parse_remote("hi")
    assert issubclass(NluUnavailable, NluError) and issubclass(NluBadResponse, NluError)


async def test_breaker_opens_after_n_failures_and_stops_calling(
    make: Any, fallback: FakeFallback
) -> None:
    rec = Recorder(server_error)
    interp = make(rec, failure_threshold=3, reset_after=30.0)
    for _ in range(3):
        await interp.parse("hello")
    assert interp.breaker_state == "open"
    assert len(rec.requests) == 3
    for _ in range(5):
        u = await interp.parse("hello")
        assert u.extras["fallback_reason"] == "circuit_open"
    assert len(rec.requests) == 3, "no HTTP call while the circuit is open"
    s = interp.stats
    assert (s.requests, s.fallbacks, s.unavailable, s.circuit_open) == (8, 8, 3, 5)
    assert s.breaker_opened == 1
    assert fallback.calls == 8


async def test_success_resets_the_failure_count(make: Any) -> None:
    rec = Recorder(server_error)
    interp = make(rec, failure_threshold=3)
    await interp.parse("a")
    await interp.parse("b")
    rec.answer = ok
    await interp.parse("c")
    rec.answer = server_error
    await interp.parse("d")
    await interp.parse("e")
    assert interp.breaker_state == "closed"


async def test_half_open_probe_closes_on_success(make: Any, clock: Clock) -> None:
    rec = Recorder(refused)
    interp = make(rec, failure_threshold=2, reset_after=30.0)
    await interp.parse("a")
    await interp.parse("b")
    assert interp.breaker_state == "open"
    clock.now += 29.9
    await interp.parse("c")
    assert len(rec.requests) == 2
    clock.now += 0.2
    assert interp.breaker_state == "half_open"
    rec.answer = ok
    u = await interp.parse("d")
    assert u.source == "rasa"
    assert interp.breaker_state == "closed"
    assert len(rec.requests) == 3
    await interp.parse("e")
    assert len(rec.requests) == 4


async def test_half_open_probe_failure_reopens(make: Any, clock: Clock) -> None:
    rec = Recorder(server_error)
    interp = make(rec, failure_threshold=1, reset_after=10.0)
    await interp.parse("a")
    clock.now += 10
    u = await interp.parse("probe")
    assert u.extras["fallback_reason"] == "unavailable"
    assert interp.breaker_state == "open"
    await interp.parse("c")
    assert len(rec.requests) == 2
    assert interp.stats.breaker_opened == 2


async def test_half_open_allows_a_single_probe_at_a_time(make: Any, clock: Clock) -> None:
    gate = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503)
        await gate.wait()
        return httpx.Response(200, json=CRAVING_JSON)

    interp = make(handler, failure_threshold=1, reset_after=5.0, timeout=2.0)
    await interp.parse("a")
    clock.now += 5
    probe = asyncio.create_task(interp.parse("probe"))
    await asyncio.sleep(0.01)
    other = await interp.parse("while probing")
    assert other.extras["fallback_reason"] == "circuit_open"
    gate.set()
    assert (await probe).source == "rasa"
    assert calls == 2
    assert interp.breaker_state == "closed"


async def test_cancelled_probe_lets_the_next_request_probe(make: Any, clock: Clock) -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503)
        if calls == 2:
            await asyncio.sleep(5)
        return httpx.Response(200, json=CRAVING_JSON)

    interp = make(handler, failure_threshold=1, reset_after=5.0, timeout=2.0)
    await interp.parse("a")
    clock.now += 5
    probe = asyncio.create_task(interp.parse("probe"))
    await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert (await interp.parse("next")).source == "rasa"


async def test_healthy(make: Any) -> None:
    rec = Recorder(lambda r: httpx.Response(200, json={"model_file": "m.tar.gz"}))
    interp = make(rec)
    assert await interp.healthy()
    assert rec.requests[0].url.path == "/status"
    rec.answer = lambda r: httpx.Response(401, json={"reason": "NotAuthenticated"})
    assert not await interp.healthy()
    rec.answer = refused
    assert not await interp.healthy()
    assert interp.stats.requests == 0, "health checks are not parse requests"


async def test_message_text_and_token_never_logged(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder(ok)
    interp = make(rec, failure_threshold=1)
    await interp.parse("my secret sentence")
    rec.answer = server_error
    await interp.parse("my secret sentence")
    await interp.parse("my secret sentence")
    messages = [r.getMessage() for r in caplog.records]
    assert any("fallback" in m for m in messages)
    assert not any("secret sentence" in m for m in messages)
    assert not any("s3cret" in m for m in messages)
    assert any("token=***" in m for m in messages), "httpx's request log is masked"


async def test_breaker_rejects_a_zero_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


async def test_async_context_manager_closes(fallback: FakeFallback) -> None:
    async with RasaInterpreter(
        RASA_URL, None, fallback, transport=httpx.MockTransport(ok)
    ) as interp:
        assert (await interp.parse("hi")).source == "rasa"
    assert interp._client.is_closed


async def test_nlu_fallback_reads_as_out_of_scope(make: Any) -> None:
    body = {
        "text": "hmm",
        "intent": {"name": "nlu_fallback", "confidence": 0.4},
        "intent_ranking": [
            {"name": "nlu_fallback", "confidence": 0.4},
            {"name": "greet", "confidence": 0.3},
        ],
        "entities": [],
    }
    interp = make(lambda request: httpx.Response(200, json=body))
    u = await interp.parse("hmm")
    assert u.source == "rasa"
    assert u.intent.name == "out_of_scope"
    assert u.extras == {"rasa_intent": "nlu_fallback"}


# nlu.bench helpers (the embedded half needs the trained model: see scripts/rasa_integration.sh)


def test_bench_helpers(tmp_path: Any) -> None:
    from nlu.bench import percentile, strip_annotations, training_messages

    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert strip_annotations('i want [beer](substance) and [coke]{"entity": "substance"}') == (
        "i want beer and coke"
    )
    (tmp_path / "nlu.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: craving\n  examples: |\n    - need a [drink](substance)\n'
        "- synonym: alcohol\n  examples: |\n    - booze\n",
        encoding="utf-8",
    )
    assert training_messages(tmp_path) == ["need a drink"]


async def test_bench_rasa_measures_over_http() -> None:
    from nlu.bench import bench_rasa, peak_rss_mb

    rec = Recorder(ok)
    result = await bench_rasa(
        RASA_URL, "s3cret", ["a", "b"], repeats=3, pid=os.getpid(), transport=rec.transport()
    )
    assert len(rec.requests) == 2 + 6, "one warm-up pass, then repeats x messages"
    assert rec.requests[0].url.params["token"] == "s3cret"
    assert set(result) == {"rasa_p50_ms", "rasa_p99_ms", "rasa_peak_rss_mb"}
    assert 0 <= result["rasa_p50_ms"] <= result["rasa_p99_ms"]
    assert result["rasa_peak_rss_mb"] > 0
    assert peak_rss_mb(2**22 + 12345) is None
    rec.answer = server_error
    with pytest.raises(RuntimeError):
        await bench_rasa(RASA_URL, None, ["a"], repeats=1, transport=rec.transport())
