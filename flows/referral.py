"""Referral: services that fit what the person asked for, in their country (asked once).

States: COUNTRY (waiting for the person's country, then answering the original request).
"""

from __future__ import annotations

from enum import StrEnum

from flows import peer
from flows.copy import text
from flows.engine import Event, EventKind, Outcome, Reply, SetCountry, State
from flows.resources import country_buttons, country_from_payload, directory, people_to_reach

NAME = "referral"

# The kinds of services that fit each request; None means crisis lines and helplines.
RESOURCE_KINDS: dict[str, tuple[str, ...] | None] = {
    "find_treatment": ("treatment", "drugs_alcohol"),
    "find_meeting": ("meetings",),
    "harm_reduction": ("harm_reduction", "drugs_alcohol"),
}


class Step(StrEnum):
    """Where a person is in the referral flow."""

    COUNTRY = "country"


def start(state: State, intent: str) -> Outcome:
    """Acknowledge the request and list services; ask the country first when unknown."""
    if intent == "request_peer":
        return peer.start(state)  # a person, not a list: the desk (or honesty that there is none)
    lang = state.person.language
    ack = text(lang, f"ack.{intent}")
    if state.person.country is None:
        body = ack + "\n\n" + text(lang, "resources.ask_country")
        ask = Reply(body, country_buttons(lang))
        return Outcome((ask,), state.at(NAME, Step.COUNTRY, intent=intent))
    body = ack + "\n\n" + people_to_reach(state.person, RESOURCE_KINDS[intent])
    return Outcome((Reply(body),), state.idle())


def handle(state: State, event: Event) -> Outcome | None:
    """A country (button or typed) answers the question; anything else goes to the router."""
    country = None
    if event.kind is EventKind.BUTTON:
        country = country_from_payload(event.payload)
    elif event.kind is EventKind.TEXT:
        country = directory().resolve_country(event.text.strip())
    if country is None:
        return None
    intent = str(state.data.get("intent") or "find_treatment")
    located = state.with_person(country=country).idle()
    body = people_to_reach(located.person, RESOURCE_KINDS.get(intent))
    return Outcome((Reply(body),), located, (SetCountry(country),))
