"""The entry point, step(state, event) -> Outcome: crisis first, then commands, flows, intents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from flows import (
    checkin,
    coping,
    craving,
    crisis,
    language,
    lapse,
    onboarding,
    peer,
    privacy,
    progress,
    referral,
    reminders,
)
from flows.copy import text
from flows.engine import Event, EventKind, JoinProgramme, Outcome, Reply, State

# A flow's handler answers the event, or returns None to let the router route it by intent.
FlowHandler = Callable[[State, Event], Outcome | None]
FLOWS: dict[str, FlowHandler] = {
    onboarding.NAME: onboarding.handle,
    crisis.NAME: crisis.handle,
    referral.NAME: referral.handle,
    craving.NAME: craving.handle,
    lapse.NAME: lapse.handle,
    coping.NAME: coping.handle,
    checkin.NAME: checkin.handle,
    privacy.NAME: privacy.handle,
    peer.NAME: peer.handle,
    reminders.NAME: reminders.handle,
    language.NAME: language.handle,
}
# Intents that start a conversation of their own.
INTENT_FLOWS: dict[str, Callable[[State, Event], Outcome]] = {
    "craving": craving.start,
    "lapse": lapse.start,
    "coping_help": coping.start,
    "start_checkin": checkin.start,
    "delete_data": privacy.start_delete,
    "request_peer": peer.start,
    "set_reminder": reminders.start_set,
    "stop_reminders": reminders.start_stop,
}
# Scheduled follow-ups, by kind, when they come due.
FOLLOWUPS: dict[str, Callable[[State], Outcome]] = {
    "crisis_checkback": crisis.on_followup,
    craving.FOLLOWUP_KIND: craving.on_followup,
    checkin.DAILY_FOLLOWUP_KIND: checkin.on_followup_daily,
    checkin.WEEKLY_FOLLOWUP_KIND: checkin.on_followup_weekly,
}
# Follow-ups that need the event too (its time, or the follow-up's own details).
FOLLOWUPS_WITH_EVENT: dict[str, Callable[[State, Event], Outcome]] = dict(reminders.FOLLOWUPS)

SMALL_TALK = frozenset(
    {"greet", "goodbye", "thanks", "affirm", "deny", "bot_challenge", "privacy_question"}
)
# Commands besides /start (which also carries a programme's deep-link code).
COMMANDS: dict[str, Callable[[State, Event], Outcome]] = {
    "delete": lambda state, _event: privacy.start_delete(state.idle()),
    "mydata": lambda state, _event: privacy.start_export(state),
    "checkin": lambda state, event: checkin.start(state.idle(), event),
    "checkup": lambda state, _event: checkin.start_weekly(state.idle()),
    "coping": lambda state, event: coping.start(state.idle(), event),
    "progress": lambda state, event: progress.start(state, event),
    "help": lambda state, _event: _say(state, "help.text"),
    "language": lambda state, event: language.start(state.idle(), event),
}


def step(state: State, event: Event) -> Outcome:
    """Handle one event. A crisis pre-empts any flow at any step."""
    if event.understanding is not None and event.understanding.is_crisis:
        return crisis.start(state, event)
    if event.kind is EventKind.COMMAND:
        return _command(state, event)
    if event.kind is EventKind.FOLLOWUP:
        return _followup(state, event)
    if event.kind is EventKind.UNSUPPORTED:
        return _say(state, "fallback.unsupported")
    if event.kind is EventKind.TEXT and not event.text.strip():
        return _say(state, "fallback.empty")
    if state.flow in FLOWS:
        handled = FLOWS[state.flow](state, event)
        if handled is not None:
            return handled
    if event.kind is EventKind.BUTTON:
        return _button(state, event)
    if not state.person.onboarded:
        pending = event.intent if event.intent not in SMALL_TALK else None
        return onboarding.start(state, pending_intent=pending)
    return answer_intent(state.idle(), event.intent or "out_of_scope", event)


def _followup(state: State, event: Event) -> Outcome:
    """A follow-up came due; one whose kind is unknown (or retired) sends nothing."""
    kind = event.payload or ""
    # Nothing scheduled may cut into a crisis conversation; only the crisis check-back itself.
    if state.flow == crisis.NAME and kind != "crisis_checkback":
        return Outcome((), state)
    if kind in FOLLOWUPS_WITH_EVENT:
        return FOLLOWUPS_WITH_EVENT[kind](state, event)
    handler = FOLLOWUPS.get(kind)
    return handler(state) if handler is not None else Outcome((), state)


def _command(state: State, event: Event) -> Outcome:
    if event.command == "start":
        outcome = onboarding.start(state.idle())
        code = event.args.strip()
        if code:
            # t.me/<bot>?start=<code>: a programme's deep link (the bot checks the code).
            outcome = replace(outcome, effects=(*outcome.effects, JoinProgramme(code)))
        return outcome
    handler = COMMANDS.get(event.command or "")
    if handler is not None:
        return handler(state, event)
    return _say(state, "fallback.unknown", "fallback.menu_hint")


def _button(state: State, event: Event) -> Outcome:
    """A button no flow claimed: a stale or forged press. Say so kindly; change nothing."""
    # A language button still works after the conversation moved on.
    chosen = language.on_button(state.idle(), event.payload or "")
    if chosen is not None:
        return chosen
    return _say(state, "fallback.button_expired", "fallback.menu_hint")


def answer_intent(state: State, intent: str, event: Event | None = None) -> Outcome:
    """The answer to an intent outside any flow: its own flow, or an honest short answer."""
    if intent in INTENT_FLOWS:
        return INTENT_FLOWS[intent](state, event or Event(kind=EventKind.TEXT))
    if intent in referral.RESOURCE_KINDS:
        return referral.start(state, intent)
    if intent == "out_of_scope":
        return _say(state, "fallback.unknown")
    if intent in SMALL_TALK:
        return _say(state, f"ack.{intent}")
    try:
        return _say(state, f"ack.{intent}", "fallback.menu_hint")
    except KeyError:
        return _say(state, "fallback.unknown", "fallback.menu_hint")


def _say(state: State, *keys: str) -> Outcome:
    """One reply made of the given messages, state unchanged."""
    lang = state.person.language
    return Outcome((Reply("\n\n".join(text(lang, key) for key in keys)),), state)
