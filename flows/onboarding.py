"""Onboarding: what Kindred is and is not, anonymity, and consent to store check-ins.

States: CONSENT (asked whether check-ins may be stored). A "no" keeps every other feature.
"""

from __future__ import annotations

from enum import StrEnum

from flows.copy import text
from flows.engine import (
    Button,
    Event,
    EventKind,
    MarkOnboarded,
    Outcome,
    Reply,
    SetConsent,
    State,
)

NAME = "onboarding"
YES, NO, MORE = "onb:yes", "onb:no", "onb:more"


class Step(StrEnum):
    """Where a person is in onboarding."""

    CONSENT = "consent"


def _consent_question(state: State, preface: str = "") -> Reply:
    lang = state.person.language
    return Reply(
        preface + text(lang, "onboarding.ask_consent"),
        (
            (Button(text(lang, "onboarding.button_yes"), YES),),
            (Button(text(lang, "onboarding.button_no"), NO),),
            (Button(text(lang, "onboarding.button_more"), MORE),),
        ),
    )


def start(state: State, pending_intent: str | None = None) -> Outcome:
    """Introduce Kindred and ask for consent; remember what the person first wrote about."""
    lang = state.person.language
    data = {"pending_intent": pending_intent} if pending_intent else {}
    # One message, not two: fewer notifications, and Telegram allows ~1 message/s per chat.
    replies = (_consent_question(state, preface=text(lang, "onboarding.intro") + "\n\n"),)
    next_state = state.with_person(onboarded=True).at(NAME, Step.CONSENT, **data)
    return Outcome(replies, next_state, (MarkOnboarded(),))


def _answer(event: Event) -> str | None:
    """YES, NO or MORE from a button or from free text (affirm / deny)."""
    if event.kind is EventKind.BUTTON and event.payload in (YES, NO, MORE):
        return event.payload
    if event.kind is EventKind.TEXT:
        return {"affirm": YES, "deny": NO, "privacy_question": MORE}.get(event.intent or "")
    return None


TRANSITIONS: dict[tuple[Step, str], str] = {
    (Step.CONSENT, YES): "onboarding.consent_yes",
    (Step.CONSENT, NO): "onboarding.consent_no",
}


def handle(state: State, event: Event) -> Outcome | None:
    """Consent answered -> record it; anything else -> record nothing and let the router go on."""
    lang = state.person.language
    answer = _answer(event)
    if answer == MORE:
        more = text(lang, "onboarding.more") + "\n\n"
        return Outcome((_consent_question(state, preface=more),), state)
    pending = state.data.get("pending_intent")
    if answer is None:
        # Not an answer: don't block the person; they can be asked again later.
        return None
    consent = answer == YES
    done = state.with_person(consent_checkins=consent).idle()
    thanks = text(lang, TRANSITIONS[(Step.CONSENT, answer)])
    if not pending:
        thanks += "\n\n" + text(lang, "onboarding.ready")
    outcome = Outcome((Reply(thanks),), done, (SetConsent(consent),))
    return outcome if not pending else outcome.then(_pending_outcome(done, str(pending)))


def _pending_outcome(state: State, intent: str) -> Outcome:
    # Imported here: the router imports this module, and answering the first message is its job.
    from flows.router import answer_intent

    return answer_intent(state, intent)
