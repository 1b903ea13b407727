"""A crisis in another language than the person's is still caught; figures of speech are not."""

from __future__ import annotations

import pytest

from nlu.language_guess import likely_languages
from nlu.pipeline import NluPipeline


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("ya no quiero vivir, me quiero morir", "crisis_suicide"),
        ("mi amigo no respira, tomó demasiadas pastillas", "crisis_overdose"),
        ("я больше не хочу жить", "crisis_suicide"),
        ("друг не дышит после передоза", "crisis_overdose"),
    ],
)
async def test_an_english_pipeline_catches_spanish_and_russian_crises(
    nlu_pipeline: NluPipeline, message: str, intent: str
) -> None:
    assert nlu_pipeline.language == "en"
    understood = await nlu_pipeline.parse(message)
    assert understood.intent.name == intent


@pytest.mark.parametrize(
    "message",
    ["i'm dying to see my kids", "what are the signs of an overdose", "killing time lol"],
)
async def test_english_figures_of_speech_are_not_judged_by_other_languages_rules(
    nlu_pipeline: NluPipeline, message: str
) -> None:
    assert not (await nlu_pipeline.parse(message)).is_crisis


def test_language_guess() -> None:
    assert "ru" in likely_languages("мне очень плохо")
    assert "es" in likely_languages("no puedo más con esto")
    assert likely_languages("i can't do this anymore") == frozenset({"en"})
