"""Privacy: export everything (/mydata) and erase everything (/delete), after a confirmation.

States: CONFIRM (asked whether to erase).
"""

from __future__ import annotations

from enum import StrEnum

from flows.copy import text
from flows.engine import (
    Button,
    EraseEverything,
    Event,
    EventKind,
    ExportData,
    Outcome,
    Reply,
    State,
)

NAME = "privacy"
ERASE, KEEP = "prv:erase", "prv:keep"


class Step(StrEnum):
    """Where a person is in the erasure conversation."""

    CONFIRM = "confirm"


def start_delete(state: State, event: Event | None = None) -> Outcome:
    """Ask before erasing: it cannot be undone."""
    lang = state.person.language
    buttons = (
        (Button(text(lang, "privacy.button.erase"), ERASE),),
        (Button(text(lang, "privacy.button.keep"), KEEP),),
    )
    reply = Reply(text(lang, "privacy.confirm_delete"), buttons)
    return Outcome((reply,), state.at(NAME, Step.CONFIRM))


def start_export(state: State, event: Event | None = None) -> Outcome:
    """Send the person everything stored about them (the bot builds the file)."""
    return Outcome((), state, (ExportData(),))


def handle(state: State, event: Event) -> Outcome | None:
    """Erase only on the explicit button (or a typed yes); anything else keeps the data."""
    lang = state.person.language
    if state.step != Step.CONFIRM:
        return None
    answer = event.payload if event.kind is EventKind.BUTTON else None
    if answer is None and event.kind is EventKind.TEXT:
        answer = {"affirm": ERASE, "deny": KEEP}.get(event.intent or "")
    if answer == ERASE:
        return Outcome((Reply(text(lang, "privacy.erased")),), state.idle(), (EraseEverything(),))
    if answer == KEEP:
        return Outcome((Reply(text(lang, "privacy.kept")),), state.idle())
    return None
