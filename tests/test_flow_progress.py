"""Progress: the 30-day summary, the chart, and loading check-ins (on SQLite and PostgreSQL)."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.charts import progress_chart
from bot.db.engine import sessionmaker
from bot.db.models import CheckIn, User
from bot.progress_view import local_today, progress_replies, zone
from bot.service import KindredService
from flows import progress, router
from flows.engine import Event, EventKind, Person, ShowProgress, State
from tests.transcript import Conversation

TODAY = date(2026, 11, 26)
PNG = b"\x89PNG\r\n\x1a\n"


def craving(days_ago: int, level: int, outcome: str | None = None) -> progress.ProgressPoint:
    """A craving check-in some days before TODAY."""
    return progress.ProgressPoint(TODAY - timedelta(days=days_ago), level, None, "craving", outcome)


def daily(days_ago: int, mood: int) -> progress.ProgressPoint:
    """A daily check-in with a mood."""
    return progress.ProgressPoint(TODAY - timedelta(days=days_ago), None, mood, "daily", None)


def png_size(image: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert image.startswith(PNG)
    width, height = struct.unpack(">II", image[16:24])
    return int(width), int(height)


# --- the flow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("consent", [True, None])
def test_progress_asks_the_bot_to_show_the_stored_data(consent: bool | None) -> None:
    state = State(person=Person(consent_checkins=consent, onboarded=True))
    outcome = progress.start(state, Event(EventKind.COMMAND, text="/progress", command="progress"))
    assert outcome.replies == ()
    assert outcome.effects == (ShowProgress(),)
    assert outcome.state == state


def test_without_consent_it_explains_instead_of_loading_nothing() -> None:
    state = State(person=Person(consent_checkins=False, onboarded=True))
    outcome = progress.start(state, Event(EventKind.COMMAND, text="/progress", command="progress"))
    assert outcome.effects == ()
    assert "chose not to have your check-ins saved" in outcome.replies[0].text
    assert "/start" in outcome.replies[0].text


# --- the summary ------------------------------------------------------------------------------


def test_no_data_says_how_to_start() -> None:
    summary = progress.summarize("en", [], TODAY, None)
    assert "nothing to show yet" in summary
    assert "craving" in summary and "/checkin" in summary
    assert "days since" not in summary


def test_no_data_still_counts_the_days_since_the_start_date() -> None:
    summary = progress.summarize("en", [], TODAY, TODAY - timedelta(days=12))
    assert "/checkin" in summary
    assert "12 days since the start date you chose" in summary


def test_check_ins_older_than_30_days_are_left_out() -> None:
    summary = progress.summarize("en", [craving(30, 9), craving(45, 2)], TODAY, None)
    assert "nothing to show yet" in summary
    summary = progress.summarize("en", [craving(29, 9)], TODAY, None)
    assert "1 check-in\n" in summary


def test_easing_cravings() -> None:
    points = [craving(20, 8), craving(15, 7), craving(10, 8), craving(5, 4), craving(1, 3)]
    points += [craving(2, 2, "passed"), craving(0, 4, "passed"), daily(3, 3), daily(1, 4)]
    summary = progress.summarize("en", points, TODAY, None)
    assert summary.startswith("<b>Your last 30 days</b>")
    assert "9 check-ins" in summary
    assert "Cravings are easing: 3.2 out of 10 on average this past week, down from 7.7." in summary
    assert "Mood: 3.5 out of 5 on average." in summary
    assert "2 cravings ridden out" in summary
    assert "real progress" in summary


def test_rising_cravings_are_met_with_support_not_judgement() -> None:
    points = [craving(25, 3), craving(12, 2), craving(6, 7), craving(2, 6)]
    summary = progress.summarize("en", points, TODAY, None)
    assert "stronger this past week: 6.5 out of 10 on average, up from 2.5" in summary
    assert "/coping" in summary
    assert "ridden out" not in summary  # no wins yet: nothing is counted against anyone
    for harsh in ("fail", "worse", "bad", "should"):
        assert harsh not in summary.lower()


def test_steady_cravings_and_a_week_with_nothing_before_it() -> None:
    steady = progress.summarize("en", [craving(14, 5), craving(3, 5), craving(1, 6)], TODAY, None)
    assert "holding steady, at about 5.5 out of 10" in steady
    recent_only = progress.summarize("en", [craving(3, 5), craving(1, 6)], TODAY, None)
    assert "Cravings: 5.5 out of 10 on average." in recent_only
    assert "Keep it up" in recent_only


def test_with_a_start_date() -> None:
    points = [daily(1, 4)]
    assert "45 days since the start date you chose" in progress.summarize(
        "en", points, TODAY, TODAY - timedelta(days=45)
    )
    assert "• 1 day since" in progress.summarize("en", points, TODAY, TODAY - timedelta(days=1))
    assert "Today is the start date" in progress.summarize("en", points, TODAY, TODAY)
    future = progress.summarize("en", points, TODAY, TODAY + timedelta(days=3))
    assert "start date" not in future


def test_a_busy_month_still_fits_a_photo_caption() -> None:
    points = [craving(d, d % 11, "passed") for d in range(30)] + [daily(d, 3) for d in range(30)]
    summary = progress.summarize("en", points, TODAY, TODAY - timedelta(days=400))
    assert len(summary) <= 1024  # Telegram's caption limit


# --- the chart --------------------------------------------------------------------------------


def test_chart_is_a_phone_sized_png() -> None:
    points = [craving(d, (d * 7) % 11, None) for d in range(0, 30, 2)]
    points += [daily(d, 1 + d % 5) for d in range(0, 30, 3)]
    image = progress_chart(points, TODAY, TODAY - timedelta(days=10))
    assert png_size(image) == (800, 500)
    assert b"matplotlib" not in image.lower()  # no software tag, nothing but the picture


def test_chart_for_no_data_and_for_edge_cases() -> None:
    assert png_size(progress_chart([], TODAY, None)) == (800, 500)
    only_mood = progress_chart([daily(0, 5)], TODAY, TODAY)
    assert only_mood.startswith(PNG)
    outside = progress_chart([craving(40, 3)], TODAY, TODAY - timedelta(days=100))
    assert outside.startswith(PNG)


# --- loading from the database ----------------------------------------------------------------


def at(days_ago: int, hour: int = 12) -> datetime:
    """A stored time (UTC) some days before TODAY."""
    day = TODAY - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def add_person(engine: AsyncEngine, *checkins: CheckIn) -> str:
    """A person with these check-ins; returns their pseudonym."""
    user_id = f"progress-{uuid.uuid4().hex}"
    async with sessionmaker(engine).begin() as session:
        session.add(User(id=user_id, channel="console", language="en", consent_checkins=True))
        await session.flush()
        for checkin in checkins:
            checkin.user_id = user_id
            session.add(checkin)
    return user_id


async def test_progress_replies_loads_the_last_30_days(engine: AsyncEngine) -> None:
    user_id = await add_person(
        engine,
        CheckIn(kind="craving", craving_level=8, created_at=at(20)),
        CheckIn(kind="craving", craving_level=7, created_at=at(12)),
        CheckIn(kind="craving", craving_level=3, outcome="passed", created_at=at(2)),
        CheckIn(kind="daily", mood=4, created_at=at(1)),
        CheckIn(kind="craving", craving_level=10, created_at=at(31)),  # too old
    )
    await add_person(engine, CheckIn(kind="craving", craving_level=9, created_at=at(1)))
    async with sessionmaker(engine)() as session:
        replies = await progress_replies(session, user_id, "en", TODAY - timedelta(days=40), TODAY)
    assert len(replies) == 1
    reply = replies[0]
    assert reply.image is not None and png_size(reply.image) == (800, 500)
    assert "4 check-ins" in reply.text
    assert "easing: 3 out of 10" in reply.text and "down from 7.5" in reply.text
    assert "1 craving ridden out" in reply.text
    assert "40 days since" in reply.text
    assert reply.buttons == ()


async def test_no_check_ins_means_no_chart(engine: AsyncEngine) -> None:
    user_id = await add_person(engine)
    async with sessionmaker(engine)() as session:
        replies = await progress_replies(session, user_id, "en", None, TODAY)
    assert len(replies) == 1
    assert replies[0].image is None
    assert "/checkin" in replies[0].text


async def test_days_are_the_persons_local_days(engine: AsyncEngine) -> None:
    # 20:00 UTC the day before the window opens is already the window's first day in Tokyo.
    first_day_in_tokyo = at(30, hour=20)
    user_id = await add_person(engine, CheckIn(kind="daily", mood=2, created_at=first_day_in_tokyo))
    async with sessionmaker(engine)() as session:
        in_utc = await progress_replies(session, user_id, "en", None, TODAY)
        in_tokyo = await progress_replies(session, user_id, "en", None, TODAY, "Asia/Tokyo")
        unknown_zone = await progress_replies(session, user_id, "en", None, TODAY, "Mars/Olympus")
    assert in_utc[0].image is None
    assert in_tokyo[0].image is not None and "Mood: 2 out of 5" in in_tokyo[0].text
    assert unknown_zone[0].image is None  # an unknown zone is read as UTC


@pytest.mark.parametrize("name", ["Mars/Olympus", "America", "Etc", "x" * 300, "../../etc/passwd"])
def test_an_unusable_time_zone_is_read_as_utc(name: str) -> None:
    assert zone(name) is UTC


def test_local_today() -> None:
    late_evening = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
    assert local_today(None, late_evening) == date(2026, 11, 26)
    assert local_today("Asia/Tokyo", late_evening) == date(2026, 11, 27)


def progress_is_wired() -> bool:
    """Whether the router sends /progress here (then the service must render it too)."""
    state = State(person=Person(consent_checkins=True, onboarded=True))
    event = Event(EventKind.COMMAND, text="/progress", command="progress")
    return ShowProgress() in router.step(state, event).effects


@pytest.mark.skipif(
    not progress_is_wired(), reason="until flows/router.py and bot/service.py wire /progress"
)
async def test_console_progress_after_a_craving(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("Yes")
    assert "nothing to show yet" in await chat.say("/progress")
    await chat.say("i really want a drink, like a 6")
    while {"Skip", "Done"} & set(chat.labels):  # the questions the message did not answer
        await chat.press("Skip" if "Skip" in chat.labels else "Done")
    assert "1 check-in" in await chat.say("/progress")
