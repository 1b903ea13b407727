"""`kindred stats`: aggregate, anonymised figures per programme, small cells suppressed.

Every figure is about a group, never a person, and any figure computed from fewer than
MIN_CELL people is replaced by "<10": in a school of 40, "2 people asked for a human this
month" can point at someone. No total row is printed, so a suppressed cell cannot be recovered
by subtracting the others from it.

Figures per programme (and for people who came without one):
- people: everyone whose row carries the programme's code;
- checkins / people_checking_in: stored check-ins (only people who consented have any);
- craving_change: the median over people of (median craving in their latest 4 weeks of
  check-ins - median in their first 4 weeks), for people whose check-ins span at least 4
  weeks: negative means cravings are easing;
- craving_by_month: the median craving level per calendar month, last 6 months;
- escalations / people_escalated: requests for a person (crisis, lapse, peer);
- median_minutes_to_claim: from a request to a volunteer claiming it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CheckIn, Escalation, User
from bot.programmes import Programme

__all__ = ["MIN_CELL", "NO_PROGRAMME", "ProgrammeFigures", "programme_stats", "render_table"]

MIN_CELL = 10
NO_PROGRAMME = "(none)"
WINDOW = timedelta(days=28)
MONTHS = 6

Value = int | float | str | None


@dataclass
class ProgrammeFigures:
    """One programme's row; a suppressed cell holds the string "<10"."""

    code: str
    name: str
    kind: str
    people: Value = None
    checkins: Value = None
    people_checking_in: Value = None
    craving_change: Value = None
    craving_by_month: dict[str, Value] = field(default_factory=dict)
    escalations: Value = None
    people_escalated: Value = None
    median_minutes_to_claim: Value = None

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data (JSON output)."""
        return dict(vars(self))


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; all stored times are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _cell(value: Value, people: int, min_cell: int) -> Value:
    """The value, or "<min_cell>" when fewer than min_cell people stand behind it."""
    return value if people >= min_cell else f"<{min_cell}"


def _round(value: float) -> float:
    return round(value, 1)


def _craving_change(readings: list[tuple[datetime, int]]) -> float | None:
    """Median of the latest 4 weeks minus median of the first 4 weeks (None: too short)."""
    readings.sort()
    first, last = readings[0][0], readings[-1][0]
    if last - first < WINDOW:
        return None
    early = [level for at, level in readings if at < first + WINDOW]
    late = [level for at, level in readings if at > last - WINDOW]
    return float(statistics.median(late) - statistics.median(early))


def _months(now: datetime, count: int) -> list[str]:
    """The last `count` calendar months as YYYY-MM, oldest first."""
    year, month = now.year, now.month
    keys = []
    for _ in range(count):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return keys[::-1]


async def programme_stats(
    session: AsyncSession, *, min_cell: int = MIN_CELL, now: datetime | None = None
) -> list[ProgrammeFigures]:
    """Figures for every programme, plus one row for people who came without a programme."""
    now = now or datetime.now(UTC)
    programmes = {
        p.code: p for p in await session.scalars(select(Programme).order_by(Programme.created_at))
    }
    membership: dict[str, str] = {}
    people: dict[str, int] = defaultdict(int)
    for user_id, code in (await session.execute(select(User.id, User.programme))).all():
        key = code if code in programmes else NO_PROGRAMME
        membership[user_id] = key
        people[key] += 1

    checkins: dict[str, int] = defaultdict(int)
    checkin_people: dict[str, set[str]] = defaultdict(set)
    readings: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    monthly: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    month_keys = set(_months(now, MONTHS))
    checkin_rows = await session.execute(
        select(CheckIn.user_id, CheckIn.created_at, CheckIn.craving_level)
    )
    for user_id, created_at, level in checkin_rows.all():
        key = membership.get(user_id, NO_PROGRAMME)
        checkins[key] += 1
        checkin_people[key].add(user_id)
        if level is None:
            continue
        at = _aware(created_at)
        readings[user_id].append((at, level))
        month = f"{at.year:04d}-{at.month:02d}"
        if month in month_keys:
            monthly[(key, month)].append((user_id, level))

    changes: dict[str, list[float]] = defaultdict(list)
    for user_id, person_readings in readings.items():
        change = _craving_change(person_readings)
        if change is not None:
            changes[membership.get(user_id, NO_PROGRAMME)].append(change)

    escalations: dict[str, int] = defaultdict(int)
    escalated: dict[str, set[str]] = defaultdict(set)
    waits: dict[str, list[tuple[str, float]]] = defaultdict(list)
    escalation_rows = await session.execute(
        select(Escalation.user_id, Escalation.created_at, Escalation.claimed_at)
    )
    for user_id, created_at, claimed_at in escalation_rows.all():
        key = membership.get(user_id, NO_PROGRAMME)
        escalations[key] += 1
        escalated[key].add(user_id)
        if claimed_at is not None:
            minutes = (_aware(claimed_at) - _aware(created_at)).total_seconds() / 60
            waits[key].append((user_id, minutes))

    keys = [*programmes, *([NO_PROGRAMME] if people.get(NO_PROGRAMME) else [])]
    result = []
    for key in keys:
        programme = programmes.get(key)
        row = ProgrammeFigures(
            code=key,
            name=programme.name if programme else "no programme",
            kind=programme.kind if programme else "-",
        )
        result.append(row)
        total = people.get(key, 0)
        row.people = _cell(total, total, min_cell)
        if total < min_cell:
            continue  # a small programme shows nothing at all, not even zeros
        with_checkins = len(checkin_people[key])
        row.checkins = _cell(checkins[key], with_checkins, min_cell)
        row.people_checking_in = _cell(with_checkins, with_checkins, min_cell)
        person_changes = changes[key]
        median_change = _round(statistics.median(person_changes)) if person_changes else None
        row.craving_change = _cell(median_change, len(person_changes), min_cell)
        for month in _months(now, MONTHS):
            values = monthly.get((key, month), [])
            contributors = len({user_id for user_id, _ in values})
            median = _round(statistics.median(v for _, v in values)) if values else None
            row.craving_by_month[month] = _cell(median, contributors, min_cell)
        with_escalations = len(escalated[key])
        row.escalations = _cell(escalations[key], with_escalations, min_cell)
        row.people_escalated = _cell(with_escalations, with_escalations, min_cell)
        claimed = waits[key]
        claim_median = _round(statistics.median(m for _, m in claimed)) if claimed else None
        row.median_minutes_to_claim = _cell(
            claim_median, len({user_id for user_id, _ in claimed}), min_cell
        )
    return result


def _show(value: Value) -> str:
    return "-" if value is None else str(value)


def render_table(rows: list[ProgrammeFigures], min_cell: int = MIN_CELL) -> str:
    """A plain-text table for the terminal (months as their own small table below)."""
    headers = (
        "programme",
        "kind",
        "people",
        "check-ins",
        "people checking in",
        "craving change",
        "escalations",
        "people escalated",
        "median min to claim",
    )
    lines = [
        (
            row.name,
            row.kind,
            _show(row.people),
            _show(row.checkins),
            _show(row.people_checking_in),
            _show(row.craving_change),
            _show(row.escalations),
            _show(row.people_escalated),
            _show(row.median_minutes_to_claim),
        )
        for row in rows
    ]
    table = _format([headers, *lines])
    months = sorted({m for row in rows for m in row.craving_by_month})
    if months:
        month_lines = [
            (row.name, *(_show(row.craving_by_month.get(m)) for m in months)) for row in rows
        ]
        table += "\n\nmedian craving (0-10) by month\n" + _format(
            [("programme", *months), *month_lines]
        )
    return table + f"\n\ncells from fewer than {min_cell} people are shown as <{min_cell}"


def _format(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
