"""Lapse: acknowledge without judgement, ask what led up to it, overdose-risk guidance, next steps.

States: WHAT (what led up to it; triggers) -> NEXT (plan / peer / treatment / nothing).
"""

from __future__ import annotations

from enum import StrEnum

from flows import peer, referral
from flows.copy import text
from flows.craving import TRIGGERS, triggers_from_text
from flows.engine import (
    Button,
    Event,
    EventKind,
    OpenEscalation,
    Outcome,
    RecordCheckIn,
    Reply,
    State,
)

NAME = "lapse"
LAPSE_PRIORITY = 1


class Step(StrEnum):
    """Where a person is after telling us about a lapse."""

    WHAT = "what"
    NEXT = "next"


def _trigger_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    buttons = [Button(text(lang, f"craving.trigger.{t}"), f"lps:trg:{t}") for t in TRIGGERS]
    rows = [tuple(buttons[i : i + 4]) for i in range(0, len(buttons), 4)]
    rows.append((Button(text(lang, "craving.skip"), "lps:trg:skip"),))
    return tuple(rows)


def _next_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    return (
        (Button(text(lang, "lapse.button.plan"), "lps:plan"),),
        (Button(text(lang, "lapse.button.peer"), "lps:peer"),),
        (Button(text(lang, "lapse.button.treatment"), "lps:treat"),),
        (Button(text(lang, "lapse.button.fine"), "lps:fine"),),
    )


def start(state: State, event: Event) -> Outcome:
    """Acknowledge, then ask what led up to it."""
    lang = state.person.language
    substance = event.understanding.entity("substance") if event.understanding else None
    body = text(lang, "lapse.ack") + "\n\n" + text(lang, "lapse.ask_what")
    next_state = state.at(NAME, Step.WHAT, substance=substance)
    return Outcome((Reply(body, _trigger_buttons(lang)),), next_state)


def handle(state: State, event: Event) -> Outcome | None:
    """Triggers, then what would help; None when the person moved on."""
    payload = event.payload if event.kind is EventKind.BUTTON else None
    if state.step == Step.WHAT:
        return _on_what(state, event, payload)
    if state.step == Step.NEXT:
        return _on_next(state, payload)
    return None


def _on_what(state: State, event: Event, payload: str | None) -> Outcome | None:
    triggers: list[str] = []
    if payload and payload.startswith("lps:trg:"):
        value = payload.removeprefix("lps:trg:")
        if value not in (*TRIGGERS, "skip"):
            return None
        triggers = [] if value == "skip" else [value]
    elif event.kind is EventKind.TEXT:
        # Whatever they wrote is their answer; the words are not stored, only matched triggers.
        triggers = triggers_from_text(event.text)
    else:
        return None
    lang = state.person.language
    body = text(lang, "lapse.safety") + "\n\n" + text(lang, "lapse.offer")
    record = RecordCheckIn(
        kind="lapse", used=True, substance=state.data.get("substance"), triggers=tuple(triggers)
    )
    escalate = OpenEscalation(reason="lapse", priority=LAPSE_PRIORITY)
    next_state = state.at(NAME, Step.NEXT, **state.data)
    return Outcome((Reply(body, _next_buttons(lang)),), next_state, (record, escalate))


def _on_next(state: State, payload: str | None) -> Outcome | None:
    lang = state.person.language
    if payload == "lps:plan":
        return Outcome((Reply(text(lang, "lapse.plan")),), state.idle())
    if payload == "lps:peer":
        return peer.connect(state.idle())
    if payload == "lps:treat":
        return referral.start(state.idle(), "find_treatment")
    if payload == "lps:fine":
        return Outcome((Reply(text(lang, "lapse.fine")),), state.idle())
    return None
