"""The progress chart: craving and mood over the last 30 days, as a PNG readable on a phone.

Built with matplotlib's object-oriented API (Figure + Agg canvas), never pyplot: no global
figure registry to leak into, no process-wide backend switch, and safe to run in a worker
thread while other charts are drawn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from io import BytesIO
from statistics import fmean
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from flows.copy import text
from flows.progress import WINDOW_DAYS, ProgressPoint, in_window, window_start

# ~800x500 px: sharp enough for Telegram's photo view, small enough to send fast.
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 5.0, 100
# Okabe-Ito colours: told apart by people with colour-vision deficiencies too.
CRAVING_COLOUR = "#D55E00"
MOOD_COLOUR = "#0072B2"
MUTED = "#6B6B6B"
GRID = "#E3E3E3"
TITLE_SIZE, LABEL_SIZE, TICK_SIZE = 20, 16, 14


def daily_means(
    points: Sequence[ProgressPoint], first: date, value: Callable[[ProgressPoint], int | None]
) -> tuple[list[int], list[float]]:
    """Per day that has any value: the day's offset from `first` and the mean of its values."""
    by_day: dict[int, list[int]] = defaultdict(list)
    for point in points:
        number = value(point)
        if number is not None:
            by_day[(point.day - first).days].append(number)
    offsets = sorted(by_day)
    return offsets, [fmean(by_day[offset]) for offset in offsets]


def progress_chart(
    points: Sequence[ProgressPoint],
    today: date,
    recovery_start: date | None,
    lang: str = "en",
) -> bytes:
    """A PNG of craving (0-10, top) and mood (1-5, bottom) over the 30 days ending today."""
    window = in_window(points, today)
    first = window_start(today)
    # Breathing room between the panels and at the edges, so nothing touches on a small screen.
    layout = ConstrainedLayoutEngine(w_pad=0.15, h_pad=0.12)
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    craving_ax, mood_ax = fig.subplots(2, 1, sharex=True)
    fig.suptitle(
        text(lang, "progress.chart.title"),
        fontsize=TITLE_SIZE,
        fontweight="bold",
        x=0.02,
        ha="left",
        parse_math=False,
    )
    _series(
        craving_ax,
        *daily_means(window, first, lambda p: p.craving_level),
        label=text(lang, "progress.chart.craving"),
        colour=CRAVING_COLOUR,
        limits=(0, 10),
        ticks=(0, 5, 10),
        empty=text(lang, "progress.chart.empty"),
    )
    _series(
        mood_ax,
        *daily_means(window, first, lambda p: p.mood),
        label=text(lang, "progress.chart.mood"),
        colour=MOOD_COLOUR,
        limits=(1, 5),
        ticks=(1, 3, 5),
        empty=text(lang, "progress.chart.empty"),
    )
    # x is days since the window's first day (plain numbers: no date units to convert).
    # Weekly ticks end on today, so the right edge always reads as "now".
    last = WINDOW_DAYS - 1
    ticks = list(range(last % 7, last + 1, 7))
    labels = [_day_label(first + timedelta(days=offset)) for offset in ticks]
    mood_ax.set_xticks(ticks, labels=labels)
    mood_ax.set_xlim(-0.5, last + 0.5)
    if recovery_start is not None and first <= recovery_start <= today:
        offset = (recovery_start - first).days
        _start_marker(craving_ax, mood_ax, offset, text(lang, "progress.chart.start"))
    buffer = BytesIO()
    # No "Software" entry: the image carries nothing but the picture.
    fig.savefig(buffer, format="png", facecolor="white", metadata={"Software": None})
    fig.clear()  # drop the artists now rather than whenever the cycle collector runs
    return buffer.getvalue()


def _day_label(day: date) -> str:
    """ "26 Nov": short enough for five labels across a phone screen."""
    return f"{day.day} {day.strftime('%b')}"


def _series(
    ax: Axes,
    days: list[int],
    values: list[float],
    *,
    label: str,
    colour: str,
    limits: tuple[float, float],
    ticks: tuple[int, ...],
    empty: str,
) -> None:
    """One panel: the daily line with dots, its own scale, a coloured title for a legend."""
    low, high = limits
    pad = (high - low) * 0.08
    ax.set_ylim(low - pad, high + pad)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=TICK_SIZE, length=0, pad=6)
    ax.grid(axis="y", color=GRID, linewidth=1)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color(GRID)
    ax.set_title(
        label, loc="left", fontsize=LABEL_SIZE, fontweight="bold", color=colour, parse_math=False
    )
    if not days:
        ax.text(
            0.5,
            0.5,
            empty,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=LABEL_SIZE,
            color=MUTED,
            parse_math=False,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 6},
        )
        return
    line_style: dict[str, Any] = {"color": colour, "linewidth": 3, "solid_capstyle": "round"}
    ax.plot(days, values, marker="o", markersize=8, markeredgecolor="white", **line_style)
    ax.fill_between(days, values, low - pad, color=colour, alpha=0.08, linewidth=0)


def _start_marker(craving_ax: Axes, mood_ax: Axes, offset: int, label: str) -> None:
    """A dashed line on the day the person chose as their start, labelled once."""
    for ax in (craving_ax, mood_ax):
        ax.axvline(offset, color=MUTED, linestyle=(0, (4, 3)), linewidth=1.5, zorder=1)
    # Label on the side with room, so it never runs off the right edge.
    right_side = offset < WINDOW_DAYS * 2 // 3
    craving_ax.annotate(
        label,
        xy=(offset, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(5 if right_side else -5, -2),
        textcoords="offset points",
        ha="left" if right_side else "right",
        va="top",
        fontsize=TICK_SIZE - 1,
        color=MUTED,
        parse_math=False,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
    )
