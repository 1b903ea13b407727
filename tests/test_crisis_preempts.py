"""A crisis message in the middle of any flow, at any step, gets the crisis answer."""

from __future__ import annotations

import pytest

from flows import router
from flows.engine import Event, EventKind, Outcome, Person, State
from nlu.understanding import IntentScore, Understanding

PERSON = Person(language="en", country="United Kingdom", consent_checkins=True, onboarded=True)


def said(text: str, intent: str, confidence: float = 0.9) -> Event:
    """A text event the NLU understood as `intent`."""
    understood = Understanding(text=text, intent=IntentScore(intent, confidence))
    return Event(kind=EventKind.TEXT, text=text, understanding=understood)


def command(name: str) -> Event:
    """A /command."""
    return Event(kind=EventKind.COMMAND, command=name, text=f"/{name}")


STARTS = {
    "onboarding": [command("start")],
    "craving": [said("craving", "craving")],
    "craving level given": [said("craving", "craving"), said("7", "out_of_scope")],
    "craving triggers": [said("craving 7/10 booze", "craving")],
    "lapse": [said("i used last night", "lapse")],
    "daily check-in": [command("checkin")],
    "weekly checkup": [command("checkup")],
    "coping": [command("coping")],
    "referral": [said("where is rehab", "find_treatment")],
    "privacy": [command("delete")],
}


def walk(where: str, events: list[Event]) -> State:
    """The state after a sequence of events (referral: a person whose country is unknown)."""
    person = PERSON if where != "referral" else Person(consent_checkins=True, onboarded=True)
    state = State(person=person)
    for event in events:
        state = router.step(state, event).state
    return state


@pytest.mark.parametrize("where", list(STARTS))
@pytest.mark.parametrize(
    ("message", "intent", "expected"),
    [
        ("i'm going to kill myself tonight", "crisis_suicide", "glad you told me"),
        ("my friend isn't breathing he took too much", "crisis_overdose", "This is an emergency"),
    ],
)
def test_crisis_pre_empts_every_flow(where: str, message: str, intent: str, expected: str) -> None:
    state = walk(where, STARTS[where])
    assert state.flow is not None, f"{where} did not leave the person inside a flow"
    outcome: Outcome = router.step(state, said(message, intent, 1.0))
    text = outcome.replies[0].text
    assert expected in text
    # The person's country's emergency number (UK), or the general guidance when unknown.
    assert "999" in text if state.person.country else "local emergency number" in text
    assert outcome.state.flow == "crisis"
    assert any(type(e).__name__ == "OpenEscalation" for e in outcome.effects)
