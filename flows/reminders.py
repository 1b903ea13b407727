"""Reminders the person asks for, pausing or stopping scheduled messages, and the messages of the
follow-ups that need no conversation of their own (reminder, recovery checkup, re-engagement,
milestone).

States: ASK_ZONE (their country spans several time zones: which is theirs?), ASK_WHEN (asked for
a reminder without a time), CONFIRMED (set; its Cancel button works), STOP_CHOICE (pause for a
day, a week, or stop), FIRED (a reminder or a hello came; its buttons are answered here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from flows import checkin, craving
from flows.copy import plural, text
from flows.engine import (
    Button,
    CancelFollowUps,
    Effect,
    Event,
    EventKind,
    Outcome,
    PauseFollowUps,
    Reply,
    ResumeFollowUps,
    ScheduleFollowUp,
    SetTimezone,
    State,
)
from flows.timezones import country_zones, zone_for
from flows.when import OneOff, Weekly, When, parse_when

NAME = "reminders"
PREFIX = "rem:"
REMINDER_KIND = "reminder"
RECOVERY_CHECKUP_KIND = "recovery_checkup"
REENGAGEMENT_KIND = "reengagement"
MILESTONE_KIND = "milestone"
PAUSE_DAYS = (1, 7)
WEEKDAY_INDEX = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}

# Offered when the person asked for a reminder without saying when: (payload, copy key).
QUICK_TIMES = (
    ("rem:when:in30", "reminders.quick.in30"),
    ("rem:when:in60", "reminders.quick.in60"),
    ("rem:when:tomorrow", "reminders.quick.tomorrow"),
    ("rem:when:evenings", "reminders.quick.evenings"),
)
QUICK_TEXT = {
    "rem:when:in30": "in 30 minutes",
    "rem:when:in60": "in 1 hour",
    "rem:when:tomorrow": "tomorrow at 9am",
    "rem:when:evenings": "every evening at 8pm",
}

_STOP_ALL = re.compile(
    r"\b(?:stop|no more|don'?t|do not|never)\b.*\b(?:all|everything|any|messages?|reminders?|"
    r"texting|messaging)\b|\bunsubscribe\b|\bleave me alone\b"
)
_PAUSE_WEEK = re.compile(r"\b(?:a|one|1|this|the)\s+week\b|\bweek\b")
_PAUSE_DAY = re.compile(r"\b(?:a|one|1)\s+day\b|\btoday\b|\btomorrow\b|\b24 ?h")
_PAUSE_DAYS = re.compile(r"\b(\d{1,2})\s+(day|week)s?\b")


class Step(StrEnum):
    """Where a person is in this flow."""

    ASK_ZONE = "ask_zone"
    ASK_WHEN = "ask_when"
    CONFIRMED = "confirmed"  # a reminder was set; its Cancel button still works
    STOP_CHOICE = "stop_choice"
    FIRED = "fired"


# --- set_reminder -----------------------------------------------------------------------------


def start_set(state: State, event: Event) -> Outcome:
    """set_reminder: schedule what the message asks for, or ask which zone or when first."""
    zones = country_zones(state.person.country)
    if state.person.timezone is None and len(zones) > 1:
        return _ask_zone(state, event.text)
    return _schedule_from_text(state, event.text, event.now)


def _ask_zone(state: State, request: str) -> Outcome:
    lang = state.person.language
    zones = country_zones(state.person.country)
    buttons = tuple((Button(z.label, f"rem:tz:{i}"),) for i, z in enumerate(zones))
    reply = Reply(text(lang, "reminders.ask_zone"), buttons)
    return Outcome((reply,), state.at(NAME, Step.ASK_ZONE, request=request[:300]))


def _schedule_from_text(state: State, message: str, now: datetime | None) -> Outcome:
    lang = state.person.language
    if now is None:  # the channel did not say when "now" is: never guess a time
        return Outcome((Reply(text(lang, "reminders.unavailable")),), state.idle())
    zone = ZoneInfo(zone_for(state.person.timezone, state.person.country))
    when = parse_when(message, now, zone, lang)
    if when is None:
        return _ask_when(state, again=state.step == Step.ASK_WHEN)
    return _confirm(state.at(NAME, Step.CONFIRMED), when, now, zone)


def _ask_when(state: State, again: bool = False) -> Outcome:
    lang = state.person.language
    buttons = tuple((Button(text(lang, key), payload),) for payload, key in QUICK_TIMES)
    key = "reminders.ask_when_again" if again else "reminders.ask_when"
    return Outcome((Reply(text(lang, key), buttons),), state.at(NAME, Step.ASK_WHEN))


def _delay_minutes(at: datetime, now: datetime) -> int:
    """Whole minutes from now (rounded up, so it never fires early)."""
    return max(1, math.ceil((at - now).total_seconds() / 60))


def _next_local(clock: time, now: datetime, zone: ZoneInfo, weekday: int | None = None) -> datetime:
    """The next time the local clock shows `clock` (on `weekday`, if given) after now."""
    local = now.astimezone(zone)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if weekday is not None and day.weekday() != weekday:
            continue
        candidate = datetime.combine(day, clock, tzinfo=zone)
        if candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("a clock time recurs within 8 days")  # pragma: no cover


def _confirm(state: State, when: When, now: datetime, zone: ZoneInfo) -> Outcome:
    lang = state.person.language
    effects: list[Effect] = [ResumeFollowUps()]
    if isinstance(when, OneOff):
        effects.append(
            ScheduleFollowUp(REMINDER_KIND, _delay_minutes(when.at, now), {"asked": True})
        )
        body = text(lang, "reminders.set_once", when=describe_moment(lang, when.at, now, zone))
        cancel_kind = REMINDER_KIND
    else:
        clock = f"{when.clock:%H:%M}"
        weekday = WEEKDAY_INDEX[when.weekday] if isinstance(when, Weekly) else None
        first = _next_local(when.clock, now, zone, weekday)
        payload: dict[str, object] = {"local_time": clock, "asked": True}
        if isinstance(when, Weekly):
            payload["weekday"] = when.weekday
            kind = checkin.WEEKLY_FOLLOWUP_KIND
            day = text(lang, f"reminders.weekday.{weekday}")
            body = text(lang, "reminders.set_weekly", weekday=day, clock=clock)
        else:
            kind = checkin.DAILY_FOLLOWUP_KIND
            body = text(lang, "reminders.set_daily", clock=clock)
        effects.append(ScheduleFollowUp(kind, _delay_minutes(first, now), payload))
        cancel_kind = kind
    body += "\n" + text(lang, "reminders.zone_note", zone=str(zone).replace("_", " "))
    button = Button(text(lang, "reminders.button_cancel"), f"rem:cancel:{cancel_kind}")
    return Outcome((Reply(body, ((button,),)),), state, tuple(effects))


def describe_moment(lang: str, at: datetime, now: datetime, zone: ZoneInfo) -> str:
    """ "in 30 minutes", "today at 20:00", "tomorrow at 09:00", "on Friday 4 December at 18:00"."""
    minutes = _delay_minutes(at, now)
    if minutes < 60:
        return plural(lang, "reminders.when.minutes", minutes, minutes=minutes)
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    clock = f"{local:%H:%M}"
    if local.date() == today:
        return text(lang, "reminders.when.today", clock=clock)
    if local.date() == today + timedelta(days=1):
        return text(lang, "reminders.when.tomorrow", clock=clock)
    return text(
        lang,
        "reminders.when.date",
        weekday=text(lang, f"reminders.weekday.{local.weekday()}"),
        day=local.day,
        month=text(lang, f"reminders.month.{local.month}"),
        clock=clock,
    )


# --- stop_reminders ---------------------------------------------------------------------------


def start_stop(state: State, event: Event) -> Outcome:
    """stop_reminders: pause or stop at once when the message says which, else offer the choice."""
    lowered = event.text.lower()
    days_match = _PAUSE_DAYS.search(lowered)
    if days_match:
        unit = 7 if days_match.group(2) == "week" else 1
        return _pause(state, min(int(days_match.group(1)) * unit, 90))
    if _PAUSE_WEEK.search(lowered):
        return _pause(state, 7)
    if _PAUSE_DAY.search(lowered):
        return _pause(state, 1)
    if _STOP_ALL.search(lowered):
        return _stop_all(state)
    lang = state.person.language
    buttons = (
        (Button(text(lang, "reminders.button_pause_day"), "rem:pause:1"),),
        (Button(text(lang, "reminders.button_pause_week"), "rem:pause:7"),),
        (Button(text(lang, "reminders.button_stop"), "rem:stop"),),
        (Button(text(lang, "reminders.button_keep"), "rem:keep"),),
    )
    reply = Reply(text(lang, "reminders.stop_choice"), buttons)
    return Outcome((reply,), state.at(NAME, Step.STOP_CHOICE))


def _pause(state: State, days: int) -> Outcome:
    lang = state.person.language
    if days == 1:
        reply = Reply(text(lang, "reminders.paused_day"))
    else:
        reply = Reply(plural(lang, "reminders.paused_days", days, days=days))
    return Outcome((reply,), state.idle(), (PauseFollowUps(days),))


def _stop_all(state: State) -> Outcome:
    lang = state.person.language
    # Cancel what is pending and hold anything new (recovery checkups, milestones) until asked.
    effects = (CancelFollowUps(), PauseFollowUps(None))
    return Outcome((Reply(text(lang, "reminders.stopped")),), state.idle(), effects)


# --- one answer within the flow ---------------------------------------------------------------


def _on_button(state: State, event: Event, payload: str) -> Outcome | None:
    lang = state.person.language
    if payload.startswith("rem:tz:") and state.step == Step.ASK_ZONE:
        zones = country_zones(state.person.country)
        index = payload.removeprefix("rem:tz:")
        if not index.isdigit() or int(index) >= len(zones):
            return None
        zone = zones[int(index)].name
        located = state.with_person(timezone=zone)
        request = str(state.data.get("request") or "")
        then = _schedule_from_text(located.idle(), request, event.now)
        return Outcome((), located, (SetTimezone(zone),)).then(then)
    if payload in QUICK_TEXT and state.step == Step.ASK_WHEN:
        return _schedule_from_text(state.idle(), QUICK_TEXT[payload], event.now)
    if payload.startswith("rem:pause:"):
        days = payload.removeprefix("rem:pause:")
        return _pause(state, int(days)) if days in {str(d) for d in PAUSE_DAYS} else None
    if payload == "rem:stop":
        return _stop_all(state)
    if payload == "rem:keep":
        return Outcome((Reply(text(lang, "reminders.kept")),), state.idle())
    if payload.startswith("rem:cancel:"):
        kind = payload.removeprefix("rem:cancel:")
        if kind not in (REMINDER_KIND, checkin.DAILY_FOLLOWUP_KIND, checkin.WEEKLY_FOLLOWUP_KIND):
            return None
        reply = Reply(text(lang, "reminders.cancelled"))
        return Outcome((reply,), state.idle(), (CancelFollowUps((kind,)),))
    if payload == "rem:fired:checkin":
        return checkin.start(state.idle(), event)
    if payload == "rem:fired:craving":
        return craving.start(state.idle(), event)
    if payload == "rem:fired:ok":
        return Outcome((Reply(text(lang, "followups.glad")),), state.idle())
    return None


def handle(state: State, event: Event) -> Outcome | None:
    """A button of this flow, or the time asked for at ASK_WHEN; None lets the router go on."""
    if event.kind is EventKind.BUTTON:
        payload = event.payload or ""
        # The cancel and stop buttons outlive the step that showed them, like any confirmation.
        return _on_button(state, event, payload) if payload.startswith(PREFIX) else None
    if event.kind is EventKind.TEXT and state.step == Step.ASK_WHEN:
        if event.intent == "stop_reminders":
            return None
        zone = ZoneInfo(zone_for(state.person.timezone, state.person.country))
        lang = state.person.language
        if event.now is not None and parse_when(event.text, event.now, zone, lang) is not None:
            return _schedule_from_text(state, event.text, event.now)
        return None
    return None


# --- follow-ups without a conversation of their own -------------------------------------------


def _fired_buttons(lang: str) -> tuple[tuple[Button, ...], ...]:
    return (
        (Button(text(lang, "followups.button_checkin"), "rem:fired:checkin"),),
        (Button(text(lang, "followups.button_craving"), "rem:fired:craving"),),
        (Button(text(lang, "followups.button_ok"), "rem:fired:ok"),),
    )


def on_reminder(state: State, event: Event) -> Outcome:
    """The reminder the person asked for: a short hello and a few ways in."""
    lang = state.person.language
    reply = Reply(text(lang, "followups.reminder"), _fired_buttons(lang))
    return Outcome((reply,), state.at(NAME, Step.FIRED))


def on_recovery_checkup(state: State, event: Event) -> Outcome:
    """A recovery checkup: the weekly checkup's questions, introduced as a periodic checkup."""
    lang = state.person.language
    weekly = checkin.start_weekly(state.idle())
    first = weekly.replies[0]
    body = text(lang, "followups.recovery_checkup") + "\n\n" + text(lang, "checkin.weekly.ask_days")
    return Outcome((Reply(body, first.buttons), *weekly.replies[1:]), weekly.state, weekly.effects)


def on_reengagement(state: State, event: Event) -> Outcome:
    """One gentle hello after a long silence; it asks nothing and offers a way out."""
    lang = state.person.language
    buttons = (
        (Button(text(lang, "followups.button_checkin"), "rem:fired:checkin"),),
        (Button(text(lang, "followups.button_no_more"), "rem:stop"),),
    )
    return Outcome(
        (Reply(text(lang, "followups.reengagement"), buttons),), state.at(NAME, Step.FIRED)
    )


def on_milestone(state: State, event: Event) -> Outcome:
    """A milestone since the start date the person set; nothing else changes."""
    lang = state.person.language
    years = int(event.details.get("years") or 0)
    days = int(event.details.get("days") or 0)
    if days <= 0:
        return Outcome((), state)
    if years == 1:
        body = text(lang, "followups.milestone_year")
    elif years > 1:
        body = plural(lang, "followups.milestone_years", years, years=years)
    elif days == 1:
        body = text(lang, "followups.milestone_first_day")
    else:
        body = plural(lang, "followups.milestone_days", days, days=days)
    return Outcome((Reply(body),), state)


FOLLOWUPS: dict[str, Callable[[State, Event], Outcome]] = {
    REMINDER_KIND: on_reminder,
    RECOVERY_CHECKUP_KIND: on_recovery_checkup,
    REENGAGEMENT_KIND: on_reengagement,
    MILESTONE_KIND: on_milestone,
}
