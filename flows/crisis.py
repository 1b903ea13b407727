"""Crisis: pre-empts every other flow. Local emergency number, a human to call, no menus.

States: SUPPORT (answered; waiting to hear the country or that the person is safe).
"""

from __future__ import annotations

from enum import StrEnum

from flows.copy import text
from flows.engine import (
    Button,
    Event,
    EventKind,
    OpenEscalation,
    Outcome,
    Reply,
    ScheduleFollowUp,
    SetCountry,
    State,
)
from flows.resources import country_buttons, country_from_payload, directory, people_to_reach

NAME = "crisis"
SAFE_PAYLOAD = "crisis:safe"
CRISIS_PRIORITY = 0
CHECK_BACK_MINUTES = 60


class Step(StrEnum):
    """Where a person is in the crisis flow."""

    SUPPORT = "support"
    CHECKBACK = "checkback"


def _emergency_line(state: State) -> str:
    lang = state.person.language
    number = directory().emergency_number(state.person.country)
    if number:
        return text(lang, "crisis.emergency_line", emergency=number)
    return text(lang, "crisis.emergency_unknown")


def _overdose_steps(state: State) -> str:
    lang = state.person.language
    number = directory().emergency_number(state.person.country)
    if number:
        return text(lang, "crisis.overdose", emergency=number)
    return text(lang, "crisis.overdose_unknown_country")


def _also_overdose(event: Event) -> bool:
    """The safety net saw an overdose in a suicidal message too (e.g. pills already taken)."""
    if event.understanding is None:
        return False
    safety = event.understanding.extras.get("safety") or {}
    return bool(safety.get("also") == "crisis_overdose")


def _buttons(state: State) -> tuple[tuple[Button, ...], ...]:
    safe = ((Button(text(state.person.language, "crisis.button_safe"), SAFE_PAYLOAD),),)
    return safe if state.person.country else country_buttons(state.person.language) + safe


def start(state: State, event: Event) -> Outcome:
    """The first answer to a crisis message: numbers first, warmth, a human, no menu."""
    lang = state.person.language
    kind = event.intent or "crisis_suicide"
    if kind == "crisis_overdose":
        opening = _overdose_steps(state)
    elif _also_overdose(event):
        # Pills already taken with intent: a medical emergency first, then the person.
        opening = _overdose_steps(state) + "\n\n" + text(lang, "crisis.suicide")
    else:
        opening = text(lang, "crisis.suicide") + "\n\n" + _emergency_line(state)
    body = opening + "\n\n" + people_to_reach(state.person)
    if not state.person.country:
        body += "\n\n" + text(lang, "crisis.stay")
    effects = (
        OpenEscalation(reason=kind, priority=CRISIS_PRIORITY),
        ScheduleFollowUp(kind="crisis_checkback", delay_minutes=CHECK_BACK_MINUTES),
    )
    next_state = state.at(NAME, Step.SUPPORT, kind=kind)
    return Outcome((Reply(body, _buttons(state)),), next_state, effects)


OKAY_PAYLOAD, STRUGGLING_PAYLOAD = "crisis:okay", "crisis:struggling"
CHECKBACK_ANSWERS = {
    "mood_positive": OKAY_PAYLOAD,
    "thanks": OKAY_PAYLOAD,
    "mood_negative": STRUGGLING_PAYLOAD,
    "deny": STRUGGLING_PAYLOAD,
    "out_of_scope": STRUGGLING_PAYLOAD,
}


def on_followup(state: State) -> Outcome:
    """The check back after a crisis: a gentle question, never a menu."""
    lang = state.person.language
    buttons = (
        (Button(text(lang, "crisis.button_okay"), OKAY_PAYLOAD),),
        (Button(text(lang, "crisis.button_struggling"), STRUGGLING_PAYLOAD),),
    )
    reply = Reply(text(lang, "crisis.checkback"), buttons)
    return Outcome((reply,), state.at(NAME, Step.CHECKBACK))


def _on_checkback(state: State, event: Event) -> Outcome | None:
    lang = state.person.language
    answer = event.payload if event.kind is EventKind.BUTTON else None
    if answer is None and event.kind is EventKind.TEXT:
        # An answer that is neither "okay" nor a request ("meh", "no", "idk") an hour after a
        # crisis is taken as still struggling: the numbers again and a volunteer, never a menu.
        answer = CHECKBACK_ANSWERS.get(event.intent or "out_of_scope")
    if answer == OKAY_PAYLOAD:
        return Outcome((Reply(text(lang, "crisis.okay")),), state.idle())
    if answer == STRUGGLING_PAYLOAD:
        body = "\n\n".join(
            (text(lang, "crisis.struggling"), _emergency_line(state), people_to_reach(state.person))
        )
        escalate = OpenEscalation(reason="crisis_checkback", priority=CRISIS_PRIORITY)
        return Outcome((Reply(body),), state.idle(), (escalate,))
    return None


# What a person in crisis may answer that asks for nothing else: "no, I don't want to call",
# "ok", "I'm scared", "bye". Each gets the bot staying with them, never a small-talk reply.
STAY_INTENTS = frozenset(
    {"deny", "affirm", "mood_negative", "out_of_scope", "goodbye", "thanks", "greet"}
)


def _stay_with_you(state: State) -> Outcome:
    """No pressure to call, the bot stays, a human is on the way, the number once more."""
    lang = state.person.language
    if state.data.get("stayed"):
        return Outcome((Reply(text(lang, "crisis.still_here")),), state)
    parts = [text(lang, "crisis.stay_with_you")]
    if state.desk:
        parts.append(text(lang, "crisis.stay_volunteer"))
    parts += [text(lang, "crisis.stay_text"), _emergency_line(state)]
    stayed = state.at(NAME, Step.SUPPORT, **{**state.data, "stayed": True})
    return Outcome((Reply("\n\n".join(parts)),), stayed)


def handle(state: State, event: Event) -> Outcome | None:
    """Country picked, 'I'm safe', or the person still with us; a request goes to the router."""
    lang = state.person.language
    if state.step == Step.CHECKBACK:
        return _on_checkback(state, event)
    if event.kind is EventKind.BUTTON and event.payload == SAFE_PAYLOAD:
        return Outcome((Reply(text(lang, "crisis.safe")),), state.idle())
    country = country_from_payload(event.payload) if event.kind is EventKind.BUTTON else None
    if country is None and event.kind is EventKind.TEXT:
        country = directory().resolve_country(event.text.strip())
    if country is None:
        if event.kind is EventKind.TEXT and (event.intent or "out_of_scope") in STAY_INTENTS:
            return _stay_with_you(state)
        return None
    located = state.with_person(country=country)
    body = "\n\n".join(
        (
            _emergency_line(located),
            people_to_reach(located.person),
            text(lang, "crisis.after_country"),
        )
    )
    safe = ((Button(text(lang, "crisis.button_safe"), SAFE_PAYLOAD),),)
    return Outcome((Reply(body, safe),), located, (SetCountry(country),))
