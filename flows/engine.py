"""The flows engine's vocabulary: state and event in, replies, effects and next state out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from nlu.understanding import Understanding


class EventKind(StrEnum):
    """What kind of thing the person did."""

    COMMAND = "command"  # /start, /help ...
    TEXT = "text"  # free text, already understood by the NLU
    BUTTON = "button"  # a press on one of our buttons (payload is untrusted input)
    UNSUPPORTED = "unsupported"  # sticker, photo, voice ... that we cannot read
    FOLLOWUP = "followup"  # a scheduled follow-up came due (payload: its kind)


@dataclass(frozen=True)
class Event:
    """One thing the person did, already parsed by the channel and the NLU."""

    kind: EventKind
    text: str = ""
    command: str | None = None
    args: str = ""
    payload: str | None = None
    understanding: Understanding | None = None
    media: str | None = None
    # When it happened (aware, UTC), set by the bot: flows never read a clock, so they stay pure.
    now: datetime | None = None
    # A FOLLOWUP's own data, e.g. which milestone it marks.
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def intent(self) -> str | None:
        """The intent the bot acts on (after the safety net), if the event was text."""
        return self.understanding.intent.name if self.understanding else None


@dataclass(frozen=True)
class Person:
    """What the flows may know about a person: settings, never identity."""

    language: str = "en"
    country: str | None = None
    consent_checkins: bool | None = None
    onboarded: bool = False
    timezone: str | None = None  # IANA name the person picked; None: their country's default


@dataclass(frozen=True)
class State:
    """A person's settings and where they are in a conversation."""

    person: Person = field(default_factory=Person)
    flow: str | None = None
    step: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    # Whether this deployment has a volunteer desk: no desk, no promise of a person.
    desk: bool = False

    def at(self, flow: str | None, step: str | None, **data: Any) -> State:
        """The same person at another step (data replaced, not merged)."""
        return replace(self, flow=flow, step=step, data=dict(data))

    def idle(self) -> State:
        """The same person outside any conversation."""
        return replace(self, flow=None, step=None, data={})

    def with_person(self, **changes: Any) -> State:
        """The same state with the person's settings changed."""
        return replace(self, person=replace(self.person, **changes))


@dataclass(frozen=True)
class Button:
    """One button: a label for people and a short payload (<= 64 bytes) for the bot."""

    label: str
    payload: str


@dataclass(frozen=True)
class Reply:
    """One message to send; text may use <b> and <i> only, values already escaped."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    image: bytes | None = None  # a PNG, sent as a photo with the text as its caption
    document: tuple[str, bytes] | None = None  # (file name, content), sent as a file

    def payloads(self) -> frozenset[str]:
        """Every payload offered by this reply."""
        return frozenset(b.payload for row in self.buttons for b in row)


# Effects: what the bot must do besides replying. Plain data; the bot applies them.
@dataclass(frozen=True)
class SetConsent:
    """Record the person's answer on storing check-ins."""

    consent: bool


@dataclass(frozen=True)
class MarkOnboarded:
    """The person has seen the introduction."""


@dataclass(frozen=True)
class SetCountry:
    """Remember the person's country (for local numbers and services)."""

    country: str


@dataclass(frozen=True)
class OpenEscalation:
    """Ask the volunteer desk for a human; lower priority number = more urgent."""

    reason: str
    priority: int


@dataclass(frozen=True)
class ScheduleFollowUp:
    """Check back with the person later."""

    kind: str
    delay_minutes: int
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelFollowUps:
    """Cancel the person's pending follow-ups (of these kinds; all when empty)."""

    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class PauseFollowUps:
    """Hold scheduled messages for `days` days, or until the person asks again (None)."""

    days: int | None = None


@dataclass(frozen=True)
class ResumeFollowUps:
    """Lift a pause: the person asked for a reminder again."""


@dataclass(frozen=True)
class SetTimezone:
    """Remember the person's time zone (an IANA name) for their local times."""

    zone: str


@dataclass(frozen=True)
class SetLanguage:
    """Write to the person in this language (a copy catalogue's code) from now on."""

    language: str


@dataclass(frozen=True)
class RecordCheckIn:
    """Store a check-in; the bot stores it only if the person consented."""

    kind: str  # craving | daily | weekly
    mood: int | None = None
    craving_level: int | None = None
    substance: str | None = None
    triggers: tuple[str, ...] = ()
    used: bool | None = None
    note: str | None = None  # encrypted at rest
    answers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordOutcome:
    """How the person's latest check-in of this kind turned out (e.g. the urge passed)."""

    kind: str
    outcome: str


@dataclass(frozen=True)
class ShowProgress:
    """Send the person's progress chart and summary (needs their stored check-ins)."""


@dataclass(frozen=True)
class ExportData:
    """Send the person a file with everything stored about them."""


@dataclass(frozen=True)
class JoinProgramme:
    """The person came through a programme's deep link; the bot checks the code exists."""

    code: str


@dataclass(frozen=True)
class EraseEverything:
    """Erase every row and job of this person (after they confirmed)."""


Effect = (
    SetConsent
    | MarkOnboarded
    | SetCountry
    | OpenEscalation
    | ScheduleFollowUp
    | CancelFollowUps
    | PauseFollowUps
    | ResumeFollowUps
    | SetTimezone
    | SetLanguage
    | RecordCheckIn
    | RecordOutcome
    | ShowProgress
    | ExportData
    | JoinProgramme
    | EraseEverything
)


@dataclass(frozen=True)
class Outcome:
    """What one step produced."""

    replies: tuple[Reply, ...]
    state: State
    effects: tuple[Effect, ...] = ()

    def then(self, other: Outcome) -> Outcome:
        """This outcome followed by another (replies and effects in order, the other's state)."""
        return Outcome(self.replies + other.replies, other.state, self.effects + other.effects)
