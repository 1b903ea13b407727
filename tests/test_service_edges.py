"""Bad input and failing dependencies: a clear, kind reply, nothing lost, nothing crashes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_or_create_secret_file
from bot.db.engine import create_engine, sessionmaker
from bot.identity import Identity
from bot.inbound import Inbound
from bot.service import KindredService
from flows.engine import EventKind
from nlu.pipeline import NluPipeline
from nlu.understanding import IntentScore, Understanding
from tests.conftest import unique_user
from tests.transcript import Conversation


def inbound(kind: EventKind, **fields: Any) -> Inbound:
    """A console event from a fresh person."""
    return Inbound(
        channel="console", external_user=unique_user(), chat_id=None, kind=kind, **fields
    )


async def test_empty_text_gets_a_gentle_reply(service: KindredService) -> None:
    handled = await service.handle(inbound(EventKind.TEXT, text="   "))
    assert "didn't catch anything" in handled.replies[0].text


async def test_a_very_long_message_is_answered(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    answer = await chat.say("I keep thinking about it. " * 200)
    assert answer


async def test_forged_button_payloads_change_nothing(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    for forged in ("onb:yes' OR 1=1", "x" * 300, "", "country:Narnia", "crisis:safe\u0000"):
        handled = await service.handle(
            Inbound(
                channel="console",
                external_user=chat.user,
                chat_id=None,
                kind=EventKind.BUTTON,
                payload=forged,
            )
        )
        assert "no longer active" in handled.replies[0].text
    # The consent question is still open and still works.
    assert "only those" in await chat.say("1")


async def test_stickers_and_photos_get_asked_for_words(service: KindredService) -> None:
    handled = await service.handle(inbound(EventKind.UNSUPPORTED, media="sticker"))
    assert "only read text messages" in handled.replies[0].text


async def test_database_down_gives_an_apology(
    identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    down = KindredService(sessionmaker(engine), identity, nlu_pipeline)
    try:
        handled = await down.handle(inbound(EventKind.TEXT, text="hi there"))
        assert "technical problem" in handled.replies[0].text
        handled = await down.handle(inbound(EventKind.TEXT, text="i took too many pills"))
        assert "emergency" in handled.replies[0].text.lower()
    finally:
        await engine.dispose()


class BrokenBackend:
    """An NLU backend that always fails."""

    async def parse(self, text: str) -> Understanding:
        """Fail like a crashed model server."""
        raise RuntimeError("backend exploded")


async def test_nlu_backend_failure_still_lets_the_safety_net_answer(
    service: KindredService, nlu_pipeline: NluPipeline
) -> None:
    broken = NluPipeline(BrokenBackend(), nlu_pipeline.safety)
    understood = await broken.parse("i want to kill myself")
    assert understood.intent.name == "crisis_suicide"
    plain = await broken.parse("what time is it")
    assert plain.intent == IntentScore("out_of_scope", 0.0)


def test_secret_is_generated_once_with_owner_only_permissions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secret"
    first = load_or_create_secret_file(path)
    assert "production must set KINDRED_SECRET_KEY" in capsys.readouterr().err
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret_file(path) == first
    assert capsys.readouterr().err == ""


def test_settings_read_the_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINDRED_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9999")
    monkeypatch.setenv("KINDRED_VOLUNTEER_CHAT_ID", "-1001")
    monkeypatch.setenv("KINDRED_HTTP_PORT", "9090")
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.telegram_api_base == "http://127.0.0.1:9999"
    assert settings.volunteer_chat_id == -1001
    assert settings.http_port == 9090


def test_pseudonyms_are_stable_and_chat_ids_encrypted() -> None:
    identity = Identity(b"one secret")
    assert identity.pseudonym("telegram", 42) == identity.pseudonym("telegram", "42")
    assert identity.pseudonym("telegram", 42) != Identity(b"other").pseudonym("telegram", 42)
    token = identity.encrypt("123456789")
    assert "123456789" not in token
    assert identity.decrypt(token) == "123456789"
