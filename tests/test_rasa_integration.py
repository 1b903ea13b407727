"""RasaInterpreter against a real Rasa 3.6 server (run by scripts/rasa_integration.sh).

Skipped unless RASA_URL is set. The last test kills the server (RASA_PID): keep it last.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from nlu.rasa_client import NluBadResponse, RasaInterpreter
from nlu.understanding import INTENTS, IntentScore, Understanding

RASA_URL = os.environ.get("RASA_URL", "")
RASA_TOKEN = os.environ.get("RASA_TOKEN") or None
# nlu/config.yml's FallbackClassifier answers nlu_fallback below its threshold.
RASA_INTENTS = {*INTENTS, "nlu_fallback"}

pytestmark = [
    pytest.mark.rasa,
    pytest.mark.skipif(
        not RASA_URL, reason="needs a real Rasa server: scripts/rasa_integration.sh"
    ),
]

MESSAGES = (
    "hello",
    "i really want a drink right now",
    "i relapsed last night and drank a whole bottle of vodka",
    "are there any AA meetings near me",
    "can i talk to a real person",
    "delete my data",
    "the urge for heroin is like 9 out of 10",
)


class NeverCalled:
    """A fallback that fails the test if Rasa did not answer."""

    async def parse(self, text: str) -> Understanding:
        """Rasa should have answered."""
        raise AssertionError("the fallback answered where Rasa should have")


class Recording:
    """A fallback that records it was used."""

    def __init__(self) -> None:
        self.calls = 0

    async def parse(self, text: str) -> Understanding:
        """Answer out_of_scope with its own source."""
        self.calls += 1
        return Understanding(text, IntentScore("out_of_scope", 1.0), source="test_fallback")


@pytest.fixture
async def rasa() -> AsyncIterator[RasaInterpreter]:
    """A RasaInterpreter on the real server whose fallback must not be used."""
    interp = RasaInterpreter(RASA_URL, RASA_TOKEN, NeverCalled(), timeout=10.0)
    yield interp
    await interp.aclose()


async def test_status_answers_with_the_token(rasa: RasaInterpreter) -> None:
    assert await rasa.healthy()


async def test_raw_parse_json_has_rasa_shape() -> None:
    async with httpx.AsyncClient(base_url=RASA_URL, timeout=10.0) as client:
        response = await client.post(
            "/model/parse", params={"token": RASA_TOKEN}, json={"text": MESSAGES[1]}
        )
    assert response.status_code == 200
    data = response.json()
    assert data["text"] == MESSAGES[1]
    assert set(data["intent"]) >= {"name", "confidence"}
    assert data["intent"]["name"] in RASA_INTENTS
    assert isinstance(data["intent_ranking"], list) and data["intent_ranking"]
    assert data["intent_ranking"][0]["name"] == data["intent"]["name"]
    assert {r["name"] for r in data["intent_ranking"]} <= RASA_INTENTS
    for ent in data["entities"]:
        assert {"entity", "value", "start", "end"} <= set(ent)


@pytest.mark.parametrize("text", MESSAGES)
async def test_real_messages_parse_through_rasa(rasa: RasaInterpreter, text: str) -> None:
    u = await rasa.parse(text)
    assert u.source == "rasa"
    assert u.text == text
    assert u.intent.name in INTENTS
    assert 0.0 <= u.intent.confidence <= 1.0
    assert {s.name for s in u.intent_ranking} <= RASA_INTENTS
    if "rasa_intent" in u.extras:
        assert u.extras["rasa_intent"] == "nlu_fallback" and u.intent.name == "out_of_scope"
    for ent in u.entities:
        assert 0 <= ent.start < ent.end <= len(text)
    assert set(u.to_json()) == {"text", "intent", "intent_ranking", "entities"}
    assert rasa.stats.rasa_ok == 1 and rasa.stats.fallbacks == 0


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("i really want a drink right now", "craving"),
        ("hello", "greet"),
    ],
)
async def test_real_intents(rasa: RasaInterpreter, text: str, intent: str) -> None:
    assert (await rasa.parse(text)).intent.name == intent


async def test_default_timeout_is_enough_once_warm() -> None:
    interp = RasaInterpreter(RASA_URL, RASA_TOKEN, NeverCalled())
    try:
        for text in MESSAGES:
            assert (await interp.parse(text)).source == "rasa"
    finally:
        await interp.aclose()


@pytest.mark.parametrize("token", ["wrong-token", None])
async def test_token_is_required(token: str | None) -> None:
    fallback = Recording()
    interp = RasaInterpreter(RASA_URL, token, fallback, timeout=10.0)
    try:
        with pytest.raises(NluBadResponse):
            await interp.parse_remote("hello")
        u = await interp.parse("hello")
        assert u.source == "test_fallback"
        assert u.extras["fallback_reason"] == "bad_response"
        assert interp.stats.bad_response == 1 and interp.stats.rasa_ok == 0
        assert fallback.calls == 1
        assert not await interp.healthy()
    finally:
        await interp.aclose()


def _port_closed(url: str) -> bool:
    """Whether nothing listens on the URL's port any more."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 0.5):
            return False
    except OSError:
        return True


# Keep this test LAST: it kills the server.
async def test_zz_server_killed_embedded_fallback_answers() -> None:
    pid = int(os.environ.get("RASA_PID") or 0)
    if not pid:
        pytest.skip("RASA_PID not set: cannot stop the server")
    from nlu.embedded import EmbeddedInterpreter

    embedded = EmbeddedInterpreter.for_language("en")
    interp = RasaInterpreter(RASA_URL, RASA_TOKEN, embedded, failure_threshold=2)
    try:
        assert (await interp.parse("hello")).source == "rasa"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while not _port_closed(RASA_URL):
            assert time.monotonic() < deadline, "the Rasa server did not stop"
            await asyncio.sleep(0.1)

        text = "i really want a drink right now"
        u = await interp.parse(text)
        expected = await embedded.parse(text)
        assert u.source == expected.source != "rasa"
        assert u.intent.name == expected.intent.name == "craving"
        assert u.extras["fallback_reason"] == "unavailable"
        assert interp.stats.fallbacks == 1 and interp.stats.unavailable == 1

        await interp.parse("hello")
        assert interp.breaker_state == "open"
        u = await interp.parse("hello")
        assert u.extras["fallback_reason"] == "circuit_open"
        s = interp.stats
        assert (s.requests, s.rasa_ok, s.fallbacks, s.circuit_open) == (4, 1, 3, 1)
        assert not await interp.healthy()
    finally:
        await interp.aclose()
