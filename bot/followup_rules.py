"""The rules for scheduled messages, as pure functions: when, whether, and what comes next.

Everything here takes `now` and the person's zone as arguments and touches no database, so each
rule is tested on its own (tests/test_followup_rules.py). bot/followups.py and
bot/housekeeping.py apply them to rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from flows import checkin, craving, reminders

__all__ = [
    "Action",
    "CheckInFacts",
    "CheckupSignals",
    "Decision",
    "KindPolicy",
    "PersonFacts",
    "PlannedFollowUp",
    "QuietHours",
    "as_utc",
    "checkup_signals",
    "decide",
    "next_checkup_days",
    "next_milestone",
    "next_occurrence",
    "pause_until",
    "plan_milestone",
    "plan_recovery_checkup",
    "plan_reengagement",
    "policy",
    "quiet_until",
    "retry_delay",
    "tightened_checkup_due",
]

CRAVING_CHECKBACK = craving.FOLLOWUP_KIND
CRISIS_CHECKBACK = "crisis_checkback"  # scheduled by flows/crisis.py
DAILY_CHECKIN = checkin.DAILY_FOLLOWUP_KIND
WEEKLY_CHECKUP = checkin.WEEKLY_FOLLOWUP_KIND
RECOVERY_CHECKUP = reminders.RECOVERY_CHECKUP_KIND
REENGAGEMENT = reminders.REENGAGEMENT_KIND
MILESTONE = reminders.MILESTONE_KIND
REMINDER = reminders.REMINDER_KIND

# "Stop everything" has no end date; a far one keeps every comparison simple (no NULL meaning two
# things) and stays far from datetime.max, so adding a day to it never overflows.
STOPPED_UNTIL = datetime(9000, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; SQLite hands stored times back naive (they are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def at_local(day: date, clock: time, zone: tzinfo) -> datetime:
    """That wall-clock time on that day in the zone, as UTC (zoneinfo resolves DST gaps)."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def pause_until(now: datetime, days: int | None) -> datetime | None:
    """When a pause ends: `days` from now, STOPPED_UNTIL for "until I ask", None for 0 (resume)."""
    if days is None:
        return STOPPED_UNTIL
    if days <= 0:
        return None
    return now + timedelta(days=days)


# --- per-kind policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class KindPolicy:
    """How one kind of follow-up behaves when it fires."""

    # Late by less than this (a restart, downtime): still sent once. Later: skipped, because a
    # "did the urge pass?" two hours on, or a 9:00 check-in at 17:00, no longer fits the moment.
    grace: timedelta
    needs_consent: bool = False  # a check-in the person agreed to with "yes, save my check-ins"
    quiet_exempt: bool = False  # the person asked for this moment; quiet hours do not move it
    pause_exempt: bool = False  # sent even during a pause (safety)
    recurring: bool = False  # skipping or sending it schedules the next one


POLICIES: dict[str, KindPolicy] = {
    CRAVING_CHECKBACK: KindPolicy(timedelta(hours=1), quiet_exempt=True),
    # A crisis check-back matters even late and even if the person had paused other messages.
    CRISIS_CHECKBACK: KindPolicy(timedelta(hours=12), quiet_exempt=True, pause_exempt=True),
    DAILY_CHECKIN: KindPolicy(timedelta(hours=2), needs_consent=True, recurring=True),
    WEEKLY_CHECKUP: KindPolicy(timedelta(hours=6), needs_consent=True, recurring=True),
    RECOVERY_CHECKUP: KindPolicy(timedelta(days=3), needs_consent=True),
    REENGAGEMENT: KindPolicy(timedelta(days=3), needs_consent=True),
    MILESTONE: KindPolicy(timedelta(hours=18)),
    REMINDER: KindPolicy(timedelta(hours=2), quiet_exempt=True),
}
DEFAULT_POLICY = KindPolicy(timedelta(hours=1))


def policy(kind: str) -> KindPolicy:
    """The policy of a kind (a cautious default for kinds this version does not know)."""
    return POLICIES.get(kind, DEFAULT_POLICY)


def quiet_exempt(kind: str, payload: Mapping[str, Any]) -> bool:
    """Whether quiet hours leave this follow-up alone: a time the person chose themselves."""
    return policy(kind).quiet_exempt or bool(payload.get("asked"))


# --- quiet hours ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietHours:
    """Local hours in which the bot does not start a conversation (default 22:00-08:00)."""

    start: time = time(22, 0)
    end: time = time(8, 0)

    def contains(self, clock: time) -> bool:
        """Whether a local wall-clock time falls in the quiet hours (which may span midnight)."""
        if self.start <= self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end


def quiet_until(now: datetime, zone: tzinfo, quiet: QuietHours = QuietHours()) -> datetime | None:
    """The end of the quiet hours `now` falls in (UTC), or None when it is not quiet there."""
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time().replace(tzinfo=None) >= quiet.start:
        day += timedelta(days=1)
    return at_local(day, quiet.end, zone)


# --- the decision when a follow-up fires ------------------------------------------------------


class Action(StrEnum):
    """What to do with a follow-up that came due."""

    DELIVER = "deliver"
    DEFER = "defer"  # quiet hours: move it to their end
    SKIP = "skip"  # too late: not sent (a recurring one goes on with its next occurrence)
    CANCEL = "cancel"  # no longer wanted: inactive, paused, consent withdrawn


@dataclass(frozen=True)
class Decision:
    """An action, why, and for DEFER the new due time."""

    action: Action
    reason: str
    until: datetime | None = None


@dataclass(frozen=True)
class PersonFacts:
    """What the rules need to know about a person when a follow-up fires."""

    active: bool
    paused_until: datetime | None
    consent_checkins: bool | None
    zone: tzinfo
    recovery_start: date | None = None


def decide(
    kind: str,
    payload: Mapping[str, Any],
    due_at: datetime,
    now: datetime,
    person: PersonFacts,
    quiet: QuietHours = QuietHours(),
) -> Decision:
    """Re-check the person, then the misfire grace, then quiet hours, at the moment it fires."""
    rules = policy(kind)
    if not person.active:
        return Decision(Action.CANCEL, "inactive")
    paused = person.paused_until is not None and as_utc(person.paused_until) > now
    if paused and not rules.pause_exempt:
        # A recurring one is skipped, not cancelled: after a week's pause the rhythm resumes.
        return Decision(Action.SKIP if rules.recurring else Action.CANCEL, "paused")
    # A rhythm the person set up themselves ("asked") is their consent to hear from us.
    if rules.needs_consent and not person.consent_checkins and not payload.get("asked"):
        return Decision(Action.CANCEL, "no consent")
    if kind == MILESTONE and payload.get("start") != _iso(person.recovery_start):
        return Decision(Action.CANCEL, "start date changed")
    if now - as_utc(due_at) > rules.grace:
        return Decision(Action.SKIP, "missed")
    if not quiet_exempt(kind, payload):
        until = quiet_until(now, person.zone, quiet)
        if until is not None:
            return Decision(Action.DEFER, "quiet hours", until)
    return Decision(Action.DELIVER, "due")


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def retry_delay(attempts: int) -> timedelta:
    """Backoff before trying a failed delivery again: 30 s, 1 min, 2 min, 4 min ... at most 30."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 30 * 60))


# --- planned rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFollowUp:
    """A follow-up row to insert, like flows' ScheduleFollowUp but at an exact time."""

    kind: str
    due_at: datetime
    idempotency_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)


def _key(kind: str, user_id: str, due_at: datetime) -> str:
    """Deterministic, so planning the same occurrence twice inserts one row."""
    return f"followup:{user_id}:{kind}:{as_utc(due_at):%Y%m%dT%H%M%S}"


# --- recurring kinds --------------------------------------------------------------------------

DEFAULT_DAILY_TIME = "19:00"
DEFAULT_WEEKLY = ("sun", "18:00")


def _clock(value: Any, default: str) -> tuple[int, int]:
    """(hour, minute) from "HH:MM"; the default when missing or malformed."""
    text = str(value or default)
    try:
        hour, minute = (int(part) for part in text.split(":", 1))
    except ValueError:
        hour, minute = (int(part) for part in default.split(":", 1))
    if not (0 <= hour < 24 and 0 <= minute < 60):
        hour, minute = (int(part) for part in default.split(":", 1))
    return hour, minute


def next_occurrence(
    kind: str,
    user_id: str,
    payload: Mapping[str, Any],
    zone: tzinfo,
    due_at: datetime,
    now: datetime,
) -> PlannedFollowUp | None:
    """The next daily or weekly occurrence after this one, in the person's local time."""
    if kind == DAILY_CHECKIN:
        hour, minute = _clock(payload.get("local_time"), DEFAULT_DAILY_TIME)
        trigger = CronTrigger(hour=hour, minute=minute, timezone=zone)
    elif kind == WEEKLY_CHECKUP:
        hour, minute = _clock(payload.get("local_time"), DEFAULT_WEEKLY[1])
        weekday = str(payload.get("weekday") or DEFAULT_WEEKLY[0])
        trigger = CronTrigger(day_of_week=weekday, hour=hour, minute=minute, timezone=zone)
    else:
        return None
    # Strictly after both the occurrence just handled and now: a coalesced backlog of missed
    # days collapses into one next occurrence instead of a burst.
    after = max(as_utc(due_at), now) + timedelta(seconds=1)
    fire = trigger.get_next_fire_time(None, after.astimezone(zone))
    if fire is None:  # pragma: no cover - a daily or weekly cron always fires again
        return None
    due = as_utc(fire)
    return PlannedFollowUp(kind, due, _key(kind, user_id, due), dict(payload))


# --- adaptive recovery checkups ---------------------------------------------------------------

# Recovery Management Checkups (Scott & Dennis 2009) met people every quarter and re-linked them
# to care early. Here: monthly at first, spacing out to quarterly while all is well, and back to
# a fortnight after a lapse, a high craving or a request for help.
CHECKUP_FIRST_DAYS = 30
CHECKUP_STEPS = (30, 45, 60, 90)
CHECKUP_TIGHT_DAYS = 14
CHECKUP_SOON_AFTER_SIGNAL = timedelta(days=7)
CHECKUP_LOCAL_TIME = time(18, 0)
HIGH_CRAVING = craving.HIGH


@dataclass(frozen=True)
class CheckInFacts:
    """The parts of a stored check-in the checkup rules look at."""

    kind: str
    used: bool | None = None
    craving_level: int | None = None
    answers: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CheckupSignals:
    """What happened since the last checkup."""

    lapse: bool = False
    high_craving: bool = False
    asked_for_help: bool = False

    @property
    def concerning(self) -> bool:
        """Any sign that more support could help soon."""
        return self.lapse or self.high_craving or self.asked_for_help


def checkup_signals(checkins: Iterable[CheckInFacts]) -> CheckupSignals:
    """Summarise check-ins into the signals that tighten the checkup rhythm."""
    lapse = high = helped = False
    for item in checkins:
        lapse |= item.kind == "lapse" or bool(item.used)
        high |= item.craving_level is not None and item.craving_level >= HIGH_CRAVING
        helped |= (item.answers or {}).get("help") == "yes"
    return CheckupSignals(lapse, high, helped)


def next_checkup_days(previous_days: int | None, signals: CheckupSignals) -> int:
    """Days until the next recovery checkup, from the last spacing and what happened since."""
    if signals.concerning:
        return CHECKUP_TIGHT_DAYS
    if previous_days is None:
        return CHECKUP_FIRST_DAYS
    longer = [days for days in CHECKUP_STEPS if days > previous_days]
    return longer[0] if longer else CHECKUP_STEPS[-1]


def plan_recovery_checkup(
    user_id: str,
    since: datetime,
    previous_days: int | None,
    signals: CheckupSignals,
    zone: tzinfo,
) -> PlannedFollowUp:
    """The next recovery checkup: `next_checkup_days` after `since`, early evening local time."""
    days = next_checkup_days(previous_days, signals)
    day = as_utc(since).astimezone(zone).date() + timedelta(days=days)
    due = at_local(day, CHECKUP_LOCAL_TIME, zone)
    return PlannedFollowUp(
        RECOVERY_CHECKUP, due, _key(RECOVERY_CHECKUP, user_id, due), {"interval_days": days}
    )


def tightened_checkup_due(
    pending_due: datetime, signal_at: datetime, zone: tzinfo
) -> datetime | None:
    """An earlier time for a pending checkup after a lapse or a high craving (None: soon anyway)."""
    day = as_utc(signal_at).astimezone(zone).date() + CHECKUP_SOON_AFTER_SIGNAL
    soon = at_local(day, CHECKUP_LOCAL_TIME, zone)
    return soon if soon < as_utc(pending_due) else None


# --- re-engagement after a long silence -------------------------------------------------------

REENGAGE_AFTER = timedelta(days=30)
REENGAGE_LOCAL_TIME = time(18, 0)


def plan_reengagement(
    user_id: str, last_seen_at: datetime, now: datetime, ever_planned: bool, zone: tzinfo
) -> PlannedFollowUp | None:
    """One gentle hello after 30 silent days, never a second one (ever_planned: one existed)."""
    if ever_planned or now - as_utc(last_seen_at) < REENGAGE_AFTER:
        return None
    local_now = now.astimezone(zone)
    day = local_now.date()
    if local_now.time().replace(tzinfo=None) >= REENGAGE_LOCAL_TIME:
        day += timedelta(days=1)
    due = at_local(day, REENGAGE_LOCAL_TIME, zone)
    # One key per person, whatever the date: a second one can never be inserted.
    return PlannedFollowUp(REENGAGEMENT, due, f"followup:{user_id}:{REENGAGEMENT}")


# --- milestones -------------------------------------------------------------------------------

MILESTONE_DAYS = (1, 7, 14, 30, 60, 90, 180, 270)
MILESTONE_LOCAL_TIME = time(10, 0)


def _anniversary(start: date, years: int) -> date:
    """The same calendar day `years` later (29 February -> 28 February)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def next_milestone(start: date, today: date) -> tuple[date, int, int]:
    """The next milestone on or after today: (its date, days since start, whole years)."""
    for days in MILESTONE_DAYS:
        day = start + timedelta(days=days)
        if day >= today:
            return day, days, 0
    years = 1
    while _anniversary(start, years) < today:
        years += 1
    day = _anniversary(start, years)
    return day, (day - start).days, years


def plan_milestone(
    user_id: str, start: date, now: datetime, zone: tzinfo
) -> PlannedFollowUp | None:
    """The next milestone message, mid-morning local time; past ones are never sent late."""
    today = now.astimezone(zone).date()
    day, days, years = next_milestone(start, today)
    due = at_local(day, MILESTONE_LOCAL_TIME, zone)
    if due < now:  # today's milestone time has passed: the next one
        day, days, years = next_milestone(start, today + timedelta(days=1))
        due = at_local(day, MILESTONE_LOCAL_TIME, zone)
    payload = {"days": days, "years": years, "start": start.isoformat()}
    key = f"followup:{user_id}:{MILESTONE}:{start.isoformat()}:{days}"
    return PlannedFollowUp(MILESTONE, due, key, payload)
