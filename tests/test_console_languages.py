"""Spanish and Russian speakers: their own words understood, answers in their language."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.identity import Identity
from bot.service import KindredService
from bot.wiring import embedded_pipeline_for
from flows.copy import catalogue
from nlu.pipeline import NluPipeline
from tests.transcript import Conversation


@pytest.fixture
def multilingual(
    engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> KindredService:
    """The service as `kindred run` builds it: one pipeline per language, built on first use."""
    return KindredService(
        sessionmaker(engine), identity, nlu_pipeline, nlu_for_language=embedded_pipeline_for
    )


def first_line(lang: str, key: str) -> str:
    """The first line of a message in a language's catalogue."""
    return catalogue(lang)[key].splitlines()[0][:40]


@pytest.mark.parametrize(
    ("lang", "craving", "crisis"),
    [
        ("es", "tengo muchísimas ganas de tomar ahora mismo", "ya no quiero vivir"),
        ("ru", "очень хочется выпить прямо сейчас", "я больше не хочу жить"),
    ],
)
async def test_a_craving_and_a_crisis_in_the_persons_language(
    multilingual: KindredService, lang: str, craving: str, crisis: str
) -> None:
    chat = Conversation(multilingual, language=lang)
    assert first_line(lang, "onboarding.intro") in await chat.say("/start")
    await chat.press(catalogue(lang)["onboarding.button_no"])
    assert first_line(lang, "craving.ask_level") in await chat.say(craving)
    answer = await chat.say(crisis)
    assert first_line(lang, "crisis.suicide") in answer
    assert "findahelpline.com" in answer
