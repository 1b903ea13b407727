"""The coping library: a list of cards, a card named in a message, and untrusted buttons."""

from __future__ import annotations

import re

import pytest

from bot.service import KindredService
from flows import coping, router
from flows.copy import catalogue, text
from flows.engine import Event, EventKind, Outcome, Person, Reply, State
from nlu.understanding import IntentScore, Understanding
from tests.transcript import Conversation

PERSON = State(person=Person(language="en", consent_checkins=True, onboarded=True))
STIGMA = re.compile(r"\b(addicts?|abusers?|junkies?|clean|dirty|substance abuse)\b", re.I)


def said(message: str, intent: str = "coping_help") -> Event:
    """Free text as the NLU would hand it over."""
    return Event(
        EventKind.TEXT, text=message, understanding=Understanding(message, IntentScore(intent, 0.9))
    )


def pressed(payload: str) -> Event:
    """A button press (its payload is untrusted input)."""
    return Event(EventKind.BUTTON, payload=payload)


def only_reply(outcome: Outcome | None) -> Reply:
    """The single reply of an outcome that must exist."""
    assert outcome is not None
    assert len(outcome.replies) == 1
    return outcome.replies[0]


def labels(reply: Reply) -> list[str]:
    """Button labels, row by row."""
    return [button.label for row in reply.buttons for button in row]


def press(state: State, reply: Reply, label: str) -> Outcome | None:
    """Press the button with this label on this reply."""
    payload = next(b.payload for row in reply.buttons for b in row if b.label == label)
    return coping.handle(state, pressed(payload))


def test_asking_for_help_shows_the_list_of_cards() -> None:
    outcome = coping.start(PERSON, said("give me a coping skill"))
    reply = only_reply(outcome)
    assert "Pick one" in reply.text
    assert labels(reply) == [
        "Urge surfing",
        "HALT check",
        "Delay and distract (DEADS)",
        "4-7-8 breathing",
        "5-4-3-2-1 grounding",
        "Play the tape forward",
        "Pros and cons",
    ]
    assert (outcome.state.flow, outcome.state.step) == (coping.NAME, coping.Step.MENU)
    assert outcome.effects == ()


@pytest.mark.parametrize(
    ("message", "card"),
    [
        ("how do i do the breathing thing", "breathe"),
        ("urge surfing?", "surf"),
        ("how do i urge surf", "surf"),
        ("how to ride out a craving", "surf"),
        ("what does HALT mean", "halt"),
        ("give me something to distract me", "deads"),
        ("explain DEADS", "deads"),
        ("can we do 4-7-8", "breathe"),
        ("teach me the 5 4 3 2 1 thing", "ground"),
        ("i need a grounding exercise", "ground"),
        ("how do i play the tape forward", "tape"),
        ("pros and cons of drinking tonight", "costs"),
        ("a cost-benefit list", "costs"),
        ("grounding first, then breathing", "ground"),
    ],
)
def test_a_named_skill_opens_its_card_directly(message: str, card: str) -> None:
    outcome = coping.start(PERSON, said(message))
    reply = only_reply(outcome)
    assert reply.text == text("en", f"coping.card.{card}")
    assert labels(reply) == ["Another card", "Back to the list", "That helped"]
    assert outcome.state.step == coping.Step.CARD
    assert outcome.state.data == {"card": card}


@pytest.mark.parametrize(
    "message",
    ["help me", "what should i do instead", "i want to escape", "background noise", "consequences"],
)
def test_no_skill_named_means_the_list(message: str) -> None:
    assert coping.card_named(message) is None
    assert "Pick one" in only_reply(coping.start(PERSON, said(message))).text


def test_the_coping_command_takes_a_skill_as_argument() -> None:
    event = Event(EventKind.COMMAND, text="/coping breathing", command="coping", args="breathing")
    assert "4-7-8" in only_reply(coping.start(PERSON, event)).text
    bare = Event(EventKind.COMMAND, text="/coping", command="coping")
    assert "Pick one" in only_reply(coping.start(PERSON, bare)).text


def test_every_card_in_the_list_opens() -> None:
    menu = coping.start(PERSON, said("coping tips"))
    for label in labels(only_reply(menu)):
        card = press(menu.state, only_reply(menu), label)
        reply = only_reply(card)
        assert reply.text.startswith("<b>")
        assert labels(reply) == ["Another card", "Back to the list", "That helped"]


def test_another_card_goes_through_all_of_them_and_wraps_round() -> None:
    outcome: Outcome | None = coping.start(PERSON, said("urge surfing?"))
    seen = []
    for _ in range(len(coping.CARDS) + 1):
        assert outcome is not None
        seen.append(outcome.state.data["card"])
        outcome = press(outcome.state, only_reply(outcome), "Another card")
    assert seen == [*coping.CARDS, "surf"]


def test_another_card_on_an_older_message_moves_on_from_that_card() -> None:
    at_tape = coping.start(PERSON, said("play the tape forward"))
    older_breathing_card = pressed("cop:next:breathe")
    outcome = coping.handle(at_tape.state, older_breathing_card)
    assert outcome is not None and outcome.state.data == {"card": "ground"}


def test_back_to_the_list_then_pick_another() -> None:
    card = coping.start(PERSON, said("HALT?"))
    menu = press(card.state, only_reply(card), "Back to the list")
    reply = only_reply(menu)
    assert reply.text == text("en", "coping.menu_again")
    assert menu is not None and menu.state.step == coping.Step.MENU
    assert "Hungry" not in reply.text
    chosen = press(menu.state, reply, "Pros and cons")
    assert "short and the long term" in only_reply(chosen).text


def test_that_helped_ends_warmly_and_stores_nothing() -> None:
    card = coping.start(PERSON, said("box breathing"))
    outcome = press(card.state, only_reply(card), "That helped")
    assert outcome is not None
    assert "glad it helped" in only_reply(outcome).text
    assert outcome.state.flow is None and outcome.state.step is None
    assert outcome.effects == ()


def test_a_skill_typed_inside_the_library_opens_it() -> None:
    menu = coping.start(PERSON, said("coping tips"))
    for intent in ("coping_help", "out_of_scope", "affirm", "craving"):
        reply = only_reply(coping.handle(menu.state, said("the grounding one", intent)))
        assert "5-4-3-2-1" in reply.text


@pytest.mark.parametrize("intent", ["lapse", "request_peer", "find_treatment", "harm_reduction"])
def test_other_needs_go_back_to_the_router_even_if_a_skill_is_named(intent: str) -> None:
    card = coping.start(PERSON, said("urge surfing"))
    assert coping.handle(card.state, said("tried the breathing but i drank anyway", intent)) is None


def test_unrelated_text_is_not_ours() -> None:
    card = coping.start(PERSON, said("urge surfing"))
    assert coping.handle(card.state, said("where is an AA meeting", "find_meeting")) is None
    assert coping.handle(card.state, said("hmm ok", "out_of_scope")) is None


@pytest.mark.parametrize(
    "payload",
    [
        "cop:card:nope",
        "cop:card:",
        "cop:card:surf\x00",
        "cop:card:SURF",
        "cop:next:../../etc",
        "cop:next:",
        "cop:list:extra",
        "cop:helpedx",
        "crv:ok",
        "x" * 300,
        "",
    ],
)
def test_forged_or_foreign_payloads_are_refused(payload: str) -> None:
    card = coping.start(PERSON, said("urge surfing"))
    assert coping.handle(card.state, pressed(payload)) is None
    assert coping.handle(card.state, Event(EventKind.BUTTON, payload=None)) is None


def test_a_step_that_is_not_ours_is_not_handled() -> None:
    stranger = PERSON.at(coping.NAME, "level")
    assert coping.handle(stranger, pressed("cop:card:surf")) is None


def test_every_payload_is_short_and_prefixed() -> None:
    replies = [only_reply(coping.start(PERSON, said("tips")))]
    replies += [only_reply(coping._card(PERSON, card)) for card in coping.CARDS]
    for reply in replies:
        for payload in reply.payloads():
            assert payload.startswith(coping.PREFIX)
            assert len(payload.encode()) <= 64


def test_cards_fit_a_phone_screen_and_use_only_allowed_tags() -> None:
    for card in coping.CARDS:
        body = text("en", f"coping.card.{card}")
        assert len(body) <= 800, card
        assert len(body.splitlines()) <= 9, card
        assert set(re.findall(r"</?([a-z]+)[^>]*>", body)) <= {"b", "i"}, card
        assert "&" not in body and "{" not in body


def test_coping_and_progress_copy_use_person_first_words() -> None:
    for key, value in catalogue("en").items():
        if key.startswith(("coping.", "progress.")):
            assert not STIGMA.search(value), key


def coping_is_wired() -> bool:
    """Whether the router sends /coping here and lets the flow handle its own buttons."""
    event = Event(EventKind.COMMAND, text="/coping", command="coping")
    offered = router.step(PERSON, event).replies[0].payloads()
    return coping.NAME in router.FLOWS and any(p.startswith(coping.PREFIX) for p in offered)


@pytest.mark.skipif(not coping_is_wired(), reason="until flows/router.py wires the coping flow")
async def test_console_coping_conversation(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    assert "Pick one" in await chat.say("/coping")
    assert "Urge surfing" in await chat.press("Urge surfing")
    assert "HALT" in await chat.press("Another card")
    assert "Which one" in await chat.press("Back to the list")
    assert "4-7-8" in await chat.say("how do i do the breathing thing")
    assert "5-4-3-2-1" in await chat.say("the grounding one")
    assert "glad it helped" in await chat.press("That helped")
