"""/language: a person picks the language Kindred writes in, and is then read in it too."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.identity import Identity
from bot.service import KindredService
from bot.wiring import embedded_pipeline_for
from flows import language, router
from flows.copy import catalogue, languages
from flows.engine import Event, EventKind, Person, SetLanguage, State
from nlu.pipeline import NluPipeline
from nlu.understanding import IntentScore, Understanding
from tests.transcript import Conversation

ONBOARDED = State(person=Person(language="en", onboarded=True))
SUICIDE = IntentScore("crisis_suicide", 1.0)


def command(args: str = "") -> Event:
    return Event(EventKind.COMMAND, text=f"/language {args}".strip(), command="language", args=args)


def first_line(lang: str, key: str) -> str:
    return catalogue(lang)[key].splitlines()[0][:40]


# --- the flow alone ---------------------------------------------------------------------------


def test_every_catalogue_is_offered_in_its_own_words() -> None:
    asked = router.step(ONBOARDED, command())
    labels = [b.label for row in asked.replies[0].buttons for b in row]
    assert labels == [catalogue(code)["language.name"] for code in languages()]
    assert {"English", "Español", "Русский"} <= set(labels)
    assert asked.replies[0].payloads() == {f"lang:{code}" for code in languages()}


def test_a_press_sets_the_language_and_confirms_in_it() -> None:
    asked = router.step(ONBOARDED, command())
    chosen = router.step(asked.state, Event(EventKind.BUTTON, payload="lang:es"))
    assert chosen.effects == (SetLanguage("es"),)
    assert chosen.state.person.language == "es" and chosen.state.flow is None
    assert chosen.replies[0].text == catalogue("es")["language.set"]


@pytest.mark.parametrize("words", ["es", "ES", "es-MX", "español", "Espanol"])
def test_language_with_a_code_or_its_own_name_sets_it_at_once(words: str) -> None:
    chosen = router.step(ONBOARDED, command(words))
    assert chosen.effects == (SetLanguage("es"),)


def test_an_unknown_language_is_answered_with_the_choices() -> None:
    answer = router.step(ONBOARDED, command("klingon"))
    assert not answer.effects
    assert answer.replies[0].text.startswith(first_line("en", "language.unknown"))
    assert "lang:ru" in answer.replies[0].payloads()


def test_a_forged_language_button_changes_nothing() -> None:
    answer = router.step(ONBOARDED, Event(EventKind.BUTTON, payload="lang:xx"))
    assert not answer.effects


def test_the_buttons_still_work_after_the_conversation_moved_on() -> None:
    later = router.step(ONBOARDED, Event(EventKind.BUTTON, payload="lang:ru"))
    assert later.effects == (SetLanguage("ru"),)


def test_a_crisis_still_comes_first_while_choosing() -> None:
    asked = router.step(ONBOARDED, command())
    assert asked.state.flow == language.NAME
    words = "i want to end my life"
    crisis = Event(EventKind.TEXT, text=words, understanding=Understanding(words, SUICIDE))
    answer = router.step(asked.state, crisis)
    assert answer.state.flow == "crisis" and not answer.effects.count(SetLanguage("en"))


# --- end to end: the stored language drives the replies and the NLU ---------------------------


@pytest.fixture
def multilingual(
    engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> KindredService:
    return KindredService(
        sessionmaker(engine), identity, nlu_pipeline, nlu_for_language=embedded_pipeline_for
    )


async def test_an_english_phone_that_picks_spanish_is_answered_and_read_in_spanish(
    multilingual: KindredService,
) -> None:
    chat = Conversation(multilingual, language="en")
    await chat.say("/start")
    await chat.press("No")
    await chat.say("/language")
    assert await chat.press("Español") == catalogue("es")["language.set"]
    # Read by the Spanish NLU: street words and all, and answered in Spanish.
    answer = await chat.say("tengo un antojo enorme de meterme perico ahora mismo")
    assert first_line("es", "craving.ask_level") in answer
    assert "Esto es lo que puedo hacer" in await chat.say("/help")


async def test_a_spanish_phone_that_picks_russian_is_read_in_russian(
    multilingual: KindredService,
) -> None:
    chat = Conversation(multilingual, language="es")
    await chat.say("/start")
    await chat.press(catalogue("es")["onboarding.button_no"])
    assert await chat.say("/language ru") == catalogue("ru")["language.set"]
    assert first_line("ru", "craving.ask_level") in await chat.say("очень хочется выпить")


@pytest.mark.parametrize(
    ("phone", "chosen", "crisis"),
    [
        ("en", "en", "ya no quiero vivir, esta noche me mato"),
        ("en", "ru", "i took too many pills and cant wake my friend up"),
        ("ru", "es", "я больше не хочу жить"),
        ("es", "en", "me tomé todas las pastillas"),
    ],
)
async def test_crisis_help_never_depends_on_the_language_setting(
    multilingual: KindredService, phone: str, chosen: str, crisis: str
) -> None:
    chat = Conversation(multilingual, language=phone)
    await chat.say("/start")
    await chat.say(f"/language {chosen}")
    answer = await chat.say(crisis)
    assert "findahelpline.com" in answer or "112" in answer or "911" in answer


@pytest.mark.parametrize(
    "crisis",
    [
        "me voy a suicidar",
        "me corto",
        "me voy a matar esta noche",
        "necesito naloxona ahora",
        "hochu umeret",
        "ne hochu zhit",
    ],
)
async def test_short_crisis_messages_in_another_language_reach_its_safety_net(
    nlu_pipeline: NluPipeline, crisis: str
) -> None:
    # The English pipeline (a phone set to English) guesses the language from few words.
    assert (await nlu_pipeline.parse(crisis)).is_crisis
