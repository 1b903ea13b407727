"""Progress: a look back over the last 30 days, as words (here) and a chart (bot/charts.py).

No conversation state: /progress asks the bot to load the person's check-ins (ShowProgress);
the bot then builds the reply with summarize() and the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import fmean

from flows.copy import plural, text
from flows.engine import Event, Outcome, Reply, ShowProgress, State

NAME = "progress"
WINDOW_DAYS = 30  # today and the 29 days before it
RECENT_DAYS = 7  # "this past week", compared with the rest of the window
# A change of at least one point (on 0-10) counts as easing or rising; less is noise.
TREND_THRESHOLD = 1.0


@dataclass(frozen=True)
class ProgressPoint:
    """One stored check-in, reduced to what progress needs (no notes, no substance)."""

    day: date  # the person's local day
    craving_level: int | None  # 0-10
    mood: int | None  # 1-5
    kind: str  # craving | daily | weekly | lapse
    outcome: str | None  # e.g. "passed" when a craving was ridden out


def start(state: State, event: Event) -> Outcome:
    """Ask the bot to show progress; without consent nothing is stored, so say so instead."""
    if state.person.consent_checkins is False:
        return Outcome((Reply(text(state.person.language, "progress.not_saved")),), state)
    return Outcome((), state, (ShowProgress(),))


def window_start(today: date) -> date:
    """The first day of the 30-day window that ends today."""
    return today - timedelta(days=WINDOW_DAYS - 1)


def in_window(points: Sequence[ProgressPoint], today: date) -> list[ProgressPoint]:
    """The points of the last 30 days (today included), oldest first."""
    first = window_start(today)
    return sorted((p for p in points if first <= p.day <= today), key=lambda p: p.day)


def craving_trend(points: Sequence[ProgressPoint], today: date) -> tuple[str, float, float] | None:
    """("easing" | "steady" | "rising", last 7 days' average, earlier average), if comparable."""
    recent_from = today - timedelta(days=RECENT_DAYS - 1)
    window = in_window(points, today)
    recent = [
        p.craving_level for p in window if p.craving_level is not None and p.day >= recent_from
    ]
    before = [
        p.craving_level for p in window if p.craving_level is not None and p.day < recent_from
    ]
    if not recent or not before:
        return None
    now, then = fmean(recent), fmean(before)
    if now <= then - TREND_THRESHOLD:
        return "easing", now, then
    if now >= then + TREND_THRESHOLD:
        return "rising", now, then
    return "steady", now, then


def summarize(
    lang: str, points: Sequence[ProgressPoint], today: date, recovery_start: date | None
) -> str:
    """A short, encouraging summary of the last 30 days (how to start, when there is nothing)."""
    window = in_window(points, today)
    days = _days_line(lang, today, recovery_start)
    if not window:
        return "\n\n".join([text(lang, "progress.empty"), *([days] if days else [])])
    lines = [
        text(lang, "progress.title"),
        plural(lang, "progress.checkins", len(window), count=len(window)),
    ]
    trend = craving_trend(window, today)
    cravings = [p.craving_level for p in window if p.craving_level is not None]
    if trend is not None:
        name, recent, before = trend
        lines.append(
            text(lang, f"progress.craving.{name}", recent=_num(recent), before=_num(before))
        )
    elif cravings:
        lines.append(text(lang, "progress.craving.average", average=_num(fmean(cravings))))
    moods = [p.mood for p in window if p.mood is not None]
    if moods:
        lines.append(text(lang, "progress.mood", average=_num(fmean(moods))))
    passed = sum(1 for p in window if p.outcome == "passed")
    if passed:  # wins only: urges that were not ridden out are not counted against anyone
        lines.append(plural(lang, "progress.passed", passed, count=passed))
    if days:
        lines.append(days)
    closing = text(lang, f"progress.close.{trend[0] if trend else 'default'}")
    return "\n".join(lines) + "\n\n" + closing


def _days_line(lang: str, today: date, recovery_start: date | None) -> str | None:
    """Days since the start date the person chose; nothing for no date or a future one."""
    if recovery_start is None or recovery_start > today:
        return None
    count = (today - recovery_start).days
    if count == 0:
        return text(lang, "progress.days.zero")
    return plural(lang, "progress.days", count, count=count)


def _num(value: float) -> str:
    """One decimal at most, without a trailing .0 ("4", "4.3")."""
    return f"{value:.1f}".removesuffix(".0")
