"""One Rasa model per language: each language's server from KINDRED_RASA_URLS, else embedded."""

from __future__ import annotations

import pytest

from bot.config import Settings, parse_rasa_urls
from bot.wiring import pipelines_for
from nlu.embedded import EmbeddedInterpreter
from nlu.rasa_client import RasaInterpreter
from tests.conftest import TEST_SECRET


def settings(**values: str) -> Settings:
    return Settings(secret_key=TEST_SECRET.decode(), **values)  # type: ignore[arg-type]


def test_the_setting_names_a_server_per_language() -> None:
    urls = parse_rasa_urls(" es=http://rasa-es:5005 , RU=http://rasa-ru:5005/,")
    assert urls == {"es": "http://rasa-es:5005", "ru": "http://rasa-ru:5005/"}
    assert parse_rasa_urls(None) == {}
    with pytest.raises(ValueError, match="language=url"):
        parse_rasa_urls("http://rasa-es:5005")


def test_a_language_with_its_own_server_uses_it_and_falls_back_to_its_embedded_model() -> None:
    pipeline_for = pipelines_for(settings(rasa_urls="es=http://127.0.0.1:9"))
    spanish = pipeline_for("es")
    assert spanish is not None and spanish.language == "es"
    assert isinstance(spanish.backend, RasaInterpreter)
    assert spanish.backend.url == "http://127.0.0.1:9"


def test_a_language_without_a_server_is_understood_by_the_embedded_model() -> None:
    pipeline_for = pipelines_for(settings(rasa_urls="es=http://127.0.0.1:9"))
    russian = pipeline_for("ru")
    assert russian is not None and isinstance(russian.backend, EmbeddedInterpreter)
    assert pipeline_for("xx") is None  # no model at all: the service uses the default


async def test_an_unreachable_language_server_still_answers_and_catches_a_crisis() -> None:
    spanish = pipelines_for(settings(rasa_urls="es=http://127.0.0.1:9"))("es")
    assert spanish is not None
    understood = await spanish.parse("ya no quiero vivir")
    assert understood.intent is not None and understood.intent.name == "crisis_suicide"
