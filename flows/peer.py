"""Peer connection, the person's side: ask, wait, talk with a volunteer through the bot, rate.

States: CONFIRM (asked whether to call a volunteer) -> WAITING (an escalation is open) ->
RELAY (a volunteer claimed it; the bot layer relays messages both ways) -> RATING -> REPORT.

Only CONFIRM and WAITING take the person's own messages here. The desk (bot/desk) calls the
`desk moments` below when something happens on the volunteers' side (a claim, a wait, the end)
and saves the state they return; the words stay here, in the flows, like every other reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from flows.copy import plural, text
from flows.engine import Button, Event, EventKind, OpenEscalation, Outcome, Reply, State
from flows.resources import people_to_reach

NAME = "peer"
REASON = "request_peer"
PRIORITY = 2  # a plain request; crises (0), lapses and strong cravings (1) come first
YES, NO = "peer:yes", "peer:no"
# Buttons the desk answers (they name an escalation, so the bot layer checks who may press them).
DESK_PREFIX = "pd:"
RATINGS = (1, 2, 3, 4, 5)
_DESK_PAYLOAD = re.compile(r"pd:(rate|report|cancel|cb):(\d{1,12})(?::([a-z0-9]{1,8}))?")


class Step(StrEnum):
    """Where a person is in a peer connection."""

    CONFIRM = "confirm"
    WAITING = "waiting"
    RELAY = "relay"
    RATING = "rating"
    REPORT = "report"


@dataclass(frozen=True)
class DeskPress:
    """A desk button press, parsed; still untrusted (the ticket may not be the presser's)."""

    action: str
    ticket: int
    value: str | None = None


def desk_payload(action: str, ticket: int, value: str | None = None) -> str:
    """The payload of a desk button (always well under Telegram's 64 bytes)."""
    return f"{DESK_PREFIX}{action}:{ticket}" + (f":{value}" if value is not None else "")


def parse_desk_payload(payload: str | None) -> DeskPress | None:
    """A desk button's payload, or None when it is not one of ours or malformed."""
    match = _DESK_PAYLOAD.fullmatch(payload or "")
    if match is None:
        return None
    action, ticket, value = match.groups()
    if action == "rate" and value not in {str(r) for r in RATINGS}:
        return None
    if action == "cb" and value not in ("yes", "no"):
        return None
    if action in ("report", "cancel") and value is not None:
        return None
    return DeskPress(action, int(ticket), value)


def _say(state: State, key: str, **params: str) -> str:
    """One message in the person's language."""
    return text(state.person.language, key, **params)


def unavailable(state: State) -> Outcome:
    """No volunteer desk in this deployment: say so honestly, and who can talk right now."""
    body = _say(state, "peer.no_desk") + "\n\n" + people_to_reach(state.person)
    return Outcome((Reply(body),), state.idle())


def start(state: State, event: Event | None = None) -> Outcome:
    """The person asked for a human: say what it means (anonymous both ways), then confirm."""
    if not state.desk:
        return unavailable(state)
    buttons = (
        (Button(_say(state, "peer.button_yes"), YES),),
        (Button(_say(state, "peer.button_no"), NO),),
    )
    return Outcome((Reply(_say(state, "peer.ask_confirm"), buttons),), state.at(NAME, Step.CONFIRM))


def connect(state: State, reason: str = REASON) -> Outcome:
    """Open the request now (a "Talk to a person" button elsewhere is consent enough)."""
    if not state.desk:
        return unavailable(state)
    escalate = OpenEscalation(reason=reason, priority=PRIORITY)
    reply = Reply(_say(state, "peer.asking"))
    return Outcome((reply,), state.at(NAME, Step.WAITING), (escalate,))


def handle(state: State, event: Event) -> Outcome | None:
    """Yes or no to the offer; a repeated request while waiting. Anything else: the router."""
    payload = event.payload if event.kind is EventKind.BUTTON else None
    if state.step == Step.CONFIRM:
        answer = payload
        if answer is None and event.kind is EventKind.TEXT:
            answer = {"affirm": YES, "request_peer": YES, "deny": NO}.get(event.intent or "")
        if answer == YES:
            return connect(state)
        if answer == NO:
            return Outcome((Reply(_say(state, "peer.declined")),), state.idle())
        return None
    if state.step == Step.WAITING and (payload == YES or event.intent == "request_peer"):
        # The escalation is already open; opening it again would only raise a duplicate.
        return Outcome((Reply(_say(state, "peer.already_waiting")),), state)
    return None


# Desk moments: the bot layer calls these when something happens on the volunteers' side.


def queued(state: State, ticket: int, minutes: int) -> Outcome:
    """Volunteers are on shift: an honest estimate of the wait, and a way to cancel."""
    cancel = ((Button(_say(state, "peer.button_cancel"), desk_payload("cancel", ticket)),),)
    reply = Reply(plural(state.person.language, "peer.queued", minutes, minutes=minutes), cancel)
    return Outcome((reply,), state)


def nobody_on_shift(state: State, ticket: int) -> Outcome:
    """Nobody is on shift: say so plainly, give people to reach now, offer a check-back."""
    body = "\n\n".join(
        (
            _say(state, "peer.nobody_on_shift"),
            people_to_reach(state.person),
            _say(state, "peer.ask_check_back"),
        )
    )
    buttons = (
        (Button(_say(state, "peer.button_check_back"), desk_payload("cb", ticket, "yes")),),
        (Button(_say(state, "peer.button_no_check_back"), desk_payload("cb", ticket, "no")),),
    )
    return Outcome((Reply(body, buttons),), state)


def check_back_set(state: State) -> Outcome:
    """The person wants to hear when the desk opens."""
    return Outcome((Reply(_say(state, "peer.check_back_set")),), state)


def withdrawn(state: State, *, declined_check_back: bool = False) -> Outcome:
    """The request is cancelled (by the person)."""
    key = "peer.check_back_declined" if declined_check_back else "peer.withdrawn"
    next_state = state.idle() if state.flow == NAME else state
    return Outcome((Reply(_say(state, key)),), next_state)


def desk_open(state: State) -> Outcome:
    """A volunteer came on shift after the person asked to be told."""
    return Outcome((Reply(_say(state, "peer.desk_open")),), state)


def still_waiting(state: State, minutes: int) -> Outcome:
    """Nobody claimed the request yet: the expected wait, and crisis numbers meanwhile."""
    body = plural(state.person.language, "peer.still_waiting", minutes, minutes=minutes)
    return Outcome((Reply(body + "\n\n" + people_to_reach(state.person)),), state)


def connected(state: State, volunteer: str, *, asked: bool) -> Outcome:
    """A volunteer claimed the request; from now on the person's messages go to them."""
    key = "peer.connected" if asked else "peer.connected_outreach"
    reply = Reply(_say(state, key, volunteer=volunteer))
    return Outcome((reply,), state.at(NAME, Step.RELAY, volunteer=volunteer))


def masked(state: State) -> Outcome:
    """Contact details were hidden from something the person sent."""
    return Outcome((Reply(_say(state, "peer.masked")),), state)


def not_relayed(state: State) -> Outcome:
    """A location or a contact card: not passed on, it would identify the person."""
    return Outcome((Reply(_say(state, "peer.not_relayed")),), state)


def volunteer_left(state: State, volunteer: str) -> Outcome:
    """The volunteer can no longer continue; the request is back in the queue."""
    reply = Reply(_say(state, "peer.volunteer_left", volunteer=volunteer))
    return Outcome((reply,), state.at(NAME, Step.WAITING))


def ended(state: State, ticket: int, volunteer: str, *, by_person: bool) -> Outcome:
    """The conversation is over: thank them, ask for a 1-5 rating and offer a report."""
    key = "peer.ended_by_you" if by_person else "peer.ended_by_volunteer"
    body = _say(state, key, volunteer=volunteer) + "\n\n" + _say(state, "peer.ask_rating")
    rating = tuple(Button(str(r), desk_payload("rate", ticket, str(r))) for r in RATINGS)
    report = (Button(_say(state, "peer.button_report"), desk_payload("report", ticket)),)
    next_state = state.at(NAME, Step.RATING, ticket=ticket)
    return Outcome((Reply(body, (rating, report)),), next_state)


def rated(state: State, ticket: int) -> Outcome:
    """Thanks for the rating; the report stays on offer."""
    report = ((Button(_say(state, "peer.button_report"), desk_payload("report", ticket)),),)
    return Outcome((Reply(_say(state, "peer.rated"), report),), state.idle())


def ask_report(state: State, ticket: int) -> Outcome:
    """The person wants to report something: their next message is the report."""
    reply = Reply(_say(state, "peer.ask_report"))
    return Outcome((reply,), state.at(NAME, Step.REPORT, ticket=ticket))


def report_received(state: State) -> Outcome:
    """The report went to the coordinators."""
    return Outcome((Reply(_say(state, "peer.report_received")),), state.idle())
