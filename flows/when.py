"""Understanding when a person wants to hear from us: "in 30 minutes", "tomorrow at 9",
"every evening at 8", "remind me daily at 9am", "every sunday at 6pm".

Pure: the caller gives `now` and the person's zone. Common English phrasings are matched by the
rules below, because they must be exact ("tomorrow at 9" is 09:00, not the current time of day
tomorrow, which is what dateparser 1.5 returns); dateparser reads the rest ("on 3 December at
5pm", "in 2 days") and is where other languages come in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

__all__ = ["Daily", "OneOff", "Weekly", "When", "parse_when"]

MAX_AHEAD = timedelta(days=90)
MIN_AHEAD = timedelta(minutes=1)
WAKING_FROM = 7  # a bare "at 8" means 08:00 or 20:00: we pick the waking-hours one ahead


@dataclass(frozen=True)
class OneOff:
    """Once, at this moment (aware UTC)."""

    at: datetime


@dataclass(frozen=True)
class Daily:
    """Every day at this local time."""

    clock: time


@dataclass(frozen=True)
class Weekly:
    """Every week on this day (mon..sun) at this local time."""

    weekday: str
    clock: time


When = OneOff | Daily | Weekly

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_RE = (
    r"(mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs|rsday)?|fri(?:day)?|"
    r"sat(?:urday)?|sun(?:day)?)"
)
_PARTS = {"morning": time(9), "afternoon": time(15), "evening": time(19), "night": time(21)}
_AMOUNT_WORDS = {"a": 1.0, "an": 1.0, "half an": 0.5, "half a": 0.5}
_AMOUNT_WORDS |= {
    w: float(i) for i, w in enumerate(("one", "two", "three", "four", "five", "six"), 1)
}

_RELATIVE = re.compile(
    r"\bin\s+(?P<amount>\d+(?:\.\d+)?|half an?|an?|one|two|three|four|five|six)\s*"
    r"(?P<unit>minutes?|mins?|m|hours?|hrs?|h)\b"
)
_HALF_HOUR = re.compile(r"\bin\s+(?:an?\s+)?half\s+(?:an\s+)?hour\b")
_CLOCK = re.compile(
    r"(?<![\d:])(?:at\s+|@\s*)?(?P<hour>\d{1,2})(?:[:.h](?P<minute>\d{2}))?\s*"
    r"(?P<meridiem>a\.?m\.?|p\.?m\.?)?(?![\d:])"
)
_NOON = re.compile(r"\b(noon|midday|midnight)\b")
_DAILY = re.compile(
    r"\b(?:daily|every\s*day|each\s+day|everyday|nightly|"
    r"(?:every|each)\s+(?:morning|afternoon|evening|night))\b"
)
_WEEKLY = re.compile(r"\b(?:every|each)\s+" + _WEEKDAY_RE + r"\b")
_WEEKDAY = re.compile(r"\b(?:on\s+|next\s+|this\s+)?" + _WEEKDAY_RE + r"\b")
_PART = re.compile(r"\b(morning|afternoon|evening|tonight|night)\b")
# A calendar date ("3 december", "dec 3", "3/12", "in 2 days"): dateparser's part.
_DATE = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b\d{1,2}[/.-]\d{1,2}\b|"
    r"\bin\s+\d+\s+(?:days?|weeks?)\b"
)


def _weekday(word: str) -> str:
    return word[:3]


def _meridiem_hour(hour: int, meridiem: str | None, part: str | None) -> int | None:
    """24-hour clock from an hour, an am/pm and a part of the day (None: still ambiguous)."""
    if hour > 23:
        return None
    if meridiem:
        if hour > 12 or hour == 0:
            return None
        pm = meridiem.startswith("p")
        return (hour % 12) + (12 if pm else 0)
    if hour > 12 or hour == 0:
        return hour
    if part in ("afternoon", "evening", "night", "tonight"):
        return hour if hour == 12 else hour + 12
    if part == "morning":
        return 0 if hour == 12 else hour
    return None


def _clock_in(text: str, part: str | None) -> tuple[int, int, bool] | None:
    """(hour, minute, certain) of the first clock time in the text, if any."""
    noon = _NOON.search(text)
    if noon:
        return (0 if noon.group(1) == "midnight" else 12), 0, True
    for match in _CLOCK.finditer(text):
        # A bare number is a clock time only after "at" / "@", or with minutes or am/pm.
        has_at = match.group(0).lstrip().startswith(("at", "@"))
        if not (has_at or match.group("minute") or match.group("meridiem")):
            continue
        hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
        if minute > 59:
            continue
        resolved = _meridiem_hour(hour, match.group("meridiem"), part)
        if resolved is not None:
            return resolved, minute, True
        if 1 <= hour <= 12:
            return hour, minute, False
    return None


def _waking(hour: int) -> int:
    """A bare hour on its own: 7-11 morning, 12 noon, 1-6 afternoon or evening."""
    return hour if WAKING_FROM <= hour <= 12 else hour + 12


def _part_of_day(text: str) -> str | None:
    match = _PART.search(text)
    return match.group(1) if match else None


def _relative(text: str, now: datetime) -> datetime | None:
    if _HALF_HOUR.search(text):
        return now + timedelta(minutes=30)
    match = _RELATIVE.search(text)
    if not match:
        return None
    raw = match.group("amount")
    amount = _AMOUNT_WORDS.get(raw) if not raw[0].isdigit() else float(raw)
    if amount is None or amount <= 0:
        return None
    minutes = amount * (60 if match.group("unit").startswith("h") else 1)
    return now + timedelta(minutes=minutes)


def _on_day(day: date, clock: time, zone: tzinfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def _one_off(text: str, now_local: datetime, zone: tzinfo) -> datetime | None:
    """A single moment from day words, a part of the day and a clock time."""
    part = _part_of_day(text)
    clock = _clock_in(text, part)
    today = now_local.date()
    days: list[date] | None = None
    if "tomorrow" in text:
        days = [today + timedelta(days=1)]
    elif (weekday := _WEEKDAY.search(text)) is not None:
        target = WEEKDAYS.index(_weekday(weekday.group(1)))
        ahead = (target - today.weekday()) % 7
        days = [today + timedelta(days=ahead or 7)] if "next" in weekday.group(0) else None
        days = days or [today + timedelta(days=ahead)]
        if ahead == 0:
            days.append(today + timedelta(days=7))
    elif "today" in text or "tonight" in text or part is not None:
        days = [today, today + timedelta(days=1)] if "today" not in text else [today]
    if clock is None and days is None:
        return None
    if clock is None:
        assert part is not None or days is not None
        clocks = [_PARTS.get("night" if part == "tonight" else part or "morning", time(9))]
    elif clock[2]:
        clocks = [time(clock[0], clock[1])]
    else:
        # "at 8": 08:00 or 20:00, whichever is the first in waking hours still ahead.
        clocks = [time(clock[0] % 12, clock[1]), time(clock[0] % 12 + 12, clock[1])]
        clocks = [c for c in clocks if c.hour >= WAKING_FROM]
    for day in days or [today, today + timedelta(days=1)]:
        for candidate in sorted(_on_day(day, c, zone) for c in clocks):
            if candidate > now_local:
                return candidate
    return None


def _with_dateparser(text: str, now_local: datetime, language: str) -> datetime | None:
    """dateparser for what the rules above do not cover ("on 3 December at 5pm", "in 2 days")."""
    from dateparser.search import search_dates

    found = search_dates(
        text,
        languages=[language],
        settings={
            "RELATIVE_BASE": now_local.replace(tzinfo=None),
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    if not found:
        return None
    matched, moment = found[0]
    # Without a time of its own, dateparser keeps the current one: mid-morning reads kinder.
    if not any(ch.isdigit() for ch in matched.split()[-1]) and moment.time() == (
        now_local.time().replace(microsecond=0, tzinfo=None)
    ):
        moment = datetime.combine(moment.date(), time(9))
    return moment.replace(tzinfo=now_local.tzinfo)


def parse_when(text: str, now: datetime, zone: tzinfo, language: str = "en") -> When | None:
    """The time or rhythm a message asks for, or None when it names none we can trust."""
    lowered = " ".join(text.lower().split())
    now_local = now.astimezone(zone)
    part = _part_of_day(lowered)
    weekly = _WEEKLY.search(lowered)
    if weekly or _DAILY.search(lowered):
        clock = _clock_in(lowered, part)
        if clock is None:
            chosen = _PARTS.get("night" if part == "tonight" else part or "evening", time(19))
        else:
            hour = clock[0] if clock[2] else _waking(clock[0])
            chosen = time(hour % 24, clock[1])
        if weekly:
            return Weekly(_weekday(weekly.group(1)), chosen)
        return Daily(chosen)
    moment = _relative(lowered, now_local)
    if moment is None and _DATE.search(lowered):
        moment = _with_dateparser(lowered, now_local, language)
    if moment is None:
        moment = _one_off(lowered, now_local, zone)
    if moment is None:
        return None
    at = moment.astimezone(now.tzinfo)
    if not (MIN_AHEAD <= at - now <= MAX_AHEAD):
        return None
    return OneOff(at)
