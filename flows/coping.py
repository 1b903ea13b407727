"""Coping library: short skill cards for hard moments, picked from a list or named in a message.

States: MENU (the list of cards) <-> CARD (one card, with Another card / Back to the list /
That helped). Nothing is stored: which skills a person reads is nobody's business but theirs.
"""

from __future__ import annotations

import re
from enum import StrEnum

from flows.copy import text
from flows.engine import Button, Event, EventKind, Outcome, Reply, State

NAME = "coping"
PREFIX = "cop:"
CARD_PAYLOAD = "cop:card:"
NEXT_PAYLOAD = "cop:next:"
LIST_PAYLOAD = "cop:list"
HELPED_PAYLOAD = "cop:helped"
# The order of the list, and of "Another card".
CARDS = ("surf", "halt", "deads", "breathe", "ground", "tape", "costs")
# How people name each skill. Specific on purpose: a loose match would hijack other messages.
CARD_WORDS = {
    "surf": r"\burge[\s-]*surf|\bsurf(?:ing)?\b|\bride (?:it|the urge|the wave|out)\b",
    "halt": r"\bhalt\b|\bhungry,? angry",
    "deads": r"\bdeads\b|\bdelay\b|\bdistract|\bsubstitut",
    "breathe": r"\bbreath|\b4[\s-]?7[\s-]?8\b",
    "ground": r"\bground(?:ing|ed)?\b|\b5[\s-]?4[\s-]?3[\s-]?2[\s-]?1\b|\bfive senses\b",
    "tape": r"\btape\b|\bplay(?:ing)? (?:it|the (?:tape|film|movie)) (?:forward|through)",
    "costs": r"\bpros (?:and|&|n|or|vs\.?) cons\b|\bcost[\s-]*benefit|\bdecisional balance",
}
_CARD_PATTERNS = {card: re.compile(words) for card, words in CARD_WORDS.items()}
# Intents under which a typed skill name inside this flow means "show me that card" (short
# phrases like "the grounding one" often read as a craving). Anything else (a lapse, a request
# for a person or for treatment) goes to the router even if a skill is named.
TYPED_CARD_INTENTS = frozenset(
    {"coping_help", "craving", "mood_negative", "out_of_scope", "affirm", "deny", "thanks"}
)


class Step(StrEnum):
    """Where a person is in the coping library."""

    MENU = "menu"
    CARD = "card"


def card_named(message: str) -> str | None:
    """The card a message names ("how do i do the breathing thing" -> breathe), first named wins."""
    lowered = message.lower()
    found = [
        (match.start(), card)
        for card, pattern in _CARD_PATTERNS.items()
        if (match := pattern.search(lowered))
    ]
    return min(found)[1] if found else None


def _menu_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    # One per row: the labels are long, and Telegram truncates side-by-side buttons on phones.
    return tuple(
        (Button(text(lang, f"coping.button.{card}"), f"{CARD_PAYLOAD}{card}"),) for card in CARDS
    )


def _card_buttons(lang: str, card: str) -> tuple[tuple[Button, ...], ...]:
    return (
        (
            Button(text(lang, "coping.button.another"), f"{NEXT_PAYLOAD}{card}"),
            Button(text(lang, "coping.button.list"), LIST_PAYLOAD),
        ),
        (Button(text(lang, "coping.button.helped"), HELPED_PAYLOAD),),
    )


def _menu(state: State, again: bool = False) -> Outcome:
    lang = state.person.language
    body = text(lang, "coping.menu_again" if again else "coping.menu")
    return Outcome((Reply(body, _menu_buttons(lang)),), state.at(NAME, Step.MENU))


def _card(state: State, card: str) -> Outcome:
    lang = state.person.language
    reply = Reply(text(lang, f"coping.card.{card}"), _card_buttons(lang, card))
    return Outcome((reply,), state.at(NAME, Step.CARD, card=card))


def start(state: State, event: Event) -> Outcome:
    """The list of cards, or straight to the card the message (or /coping's argument) names."""
    card = card_named(f"{event.text} {event.args}")
    return _card(state, card) if card else _menu(state)


def handle(state: State, event: Event) -> Outcome | None:
    """A pick, another card, back to the list, or "that helped"; None when not ours."""
    if state.step not in (Step.MENU, Step.CARD):
        return None
    if event.kind is EventKind.BUTTON:
        return _on_button(state, event.payload or "")
    if event.kind is EventKind.TEXT and event.intent in (None, *TYPED_CARD_INTENTS):
        card = card_named(event.text)
        if card:
            return _card(state, card)
    return None


def _on_button(state: State, payload: str) -> Outcome | None:
    """Payloads are untrusted: only exact, known values are acted on."""
    if payload.startswith(CARD_PAYLOAD):
        card = payload.removeprefix(CARD_PAYLOAD)
        return _card(state, card) if card in CARDS else None
    if payload.startswith(NEXT_PAYLOAD):
        # The card comes from the pressed message itself, so an older card's button still
        # moves on from that card rather than from whatever was shown last.
        card = payload.removeprefix(NEXT_PAYLOAD)
        if card not in CARDS:
            return None
        return _card(state, CARDS[(CARDS.index(card) + 1) % len(CARDS)])
    if payload == LIST_PAYLOAD:
        return _menu(state, again=True)
    if payload == HELPED_PAYLOAD:
        lang = state.person.language
        return Outcome((Reply(text(lang, "coping.helped")),), state.idle())
    return None
