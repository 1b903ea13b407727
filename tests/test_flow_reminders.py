"""set_reminder and stop_reminders: what is understood, what is confirmed, which effects follow;
and the messages of the scheduled kinds (reminder, recovery checkup, re-engagement, milestone)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.service import KindredService
from flows import reminders, router
from flows.engine import (
    CancelFollowUps,
    Event,
    EventKind,
    Outcome,
    PauseFollowUps,
    Person,
    ResumeFollowUps,
    ScheduleFollowUp,
    SetTimezone,
    State,
)
from flows.when import Daily, OneOff, Weekly, parse_when
from nlu.understanding import IntentScore, Understanding
from tests.transcript import Conversation

LONDON = ZoneInfo("Europe/London")
# Tuesday 1 December 2026, 15:00 in London (GMT).
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
UK = State(person=Person(country="United Kingdom", consent_checkins=True, onboarded=True))
US = State(person=Person(country="United States", consent_checkins=True, onboarded=True))


def said(message: str, intent: str = "set_reminder", now: datetime | None = NOW) -> Event:
    """Free text as the NLU hands it over, at NOW."""
    understanding = Understanding(message, IntentScore(intent, 0.9))
    return Event(EventKind.TEXT, text=message, understanding=understanding, now=now)


def pressed(payload: str, now: datetime | None = NOW) -> Event:
    """A button press at NOW."""
    return Event(EventKind.BUTTON, payload=payload, now=now)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A December 2026 London time as UTC (GMT, so the same clock)."""
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("in 30 minutes", OneOff(NOW + timedelta(minutes=30))),
        ("remind me in 30 minutes", OneOff(NOW + timedelta(minutes=30))),
        ("can you check on me in an hour", OneOff(NOW + timedelta(hours=1))),
        ("in half an hour please", OneOff(NOW + timedelta(minutes=30))),
        ("in 2 hours", OneOff(NOW + timedelta(hours=2))),
        ("tomorrow at 9", OneOff(local(2, 9))),
        ("remind me tomorrow at 9", OneOff(local(2, 9))),
        ("tomorrow at 9pm", OneOff(local(2, 21))),
        ("tomorrow at 21:30", OneOff(local(2, 21, 30))),
        ("at 8", OneOff(local(1, 20))),  # 08:00 has passed today: 20:00
        ("at 9am", OneOff(local(2, 9))),  # 09:00 has passed today: tomorrow
        ("tonight at 10", OneOff(local(1, 22))),
        ("this evening", OneOff(local(1, 19))),
        ("on friday at 6pm", OneOff(local(4, 18))),
        ("tuesday at 9am", OneOff(local(8, 9))),  # today is Tuesday and 9am is gone
        ("every evening at 8", Daily(time(20, 0))),
        ("remind me daily at 9am", Daily(time(9, 0))),
        ("every day at 7:30", Daily(time(7, 30))),
        ("every night", Daily(time(21, 0))),
        ("every sunday at 6pm", Weekly("sun", time(18, 0))),
        ("on 3 december at 5pm", OneOff(local(3, 17))),
    ],
)
def test_understood_times(message: str, expected: object) -> None:
    assert parse_when(message, NOW, LONDON) == expected


@pytest.mark.parametrize(
    "message", ["remind me", "check on me later", "in 0 minutes", "in 200 days", "at 25"]
)
def test_no_time_or_an_impossible_one_is_not_guessed(message: str) -> None:
    assert parse_when(message, NOW, LONDON) is None


def test_a_one_off_reminder_is_scheduled_and_confirmed_with_a_way_to_cancel() -> None:
    outcome = router.step(UK, said("remind me tomorrow at 9"))
    assert outcome.effects == (
        ResumeFollowUps(),
        ScheduleFollowUp(reminders.REMINDER_KIND, 18 * 60, {"asked": True}),
    )
    reply = outcome.replies[0]
    assert "tomorrow at 09:00" in reply.text and "Europe/London" in reply.text
    assert reply.payloads() == {"rem:cancel:reminder"}
    cancel = router.step(outcome.state, pressed("rem:cancel:reminder"))
    assert cancel.effects == (CancelFollowUps(("reminder",)),)


def test_every_evening_at_eight_becomes_a_daily_check_in_in_local_time() -> None:
    outcome = router.step(UK, said("every evening at 8"))
    schedule = outcome.effects[1]
    assert isinstance(schedule, ScheduleFollowUp)
    assert schedule.kind == "daily_checkin" and schedule.delay_minutes == 5 * 60
    assert schedule.payload == {"local_time": "20:00", "asked": True}
    assert "every day at 20:00" in outcome.replies[0].text


def test_every_sunday_becomes_a_weekly_checkup() -> None:
    outcome = router.step(UK, said("every sunday at 6pm"))
    schedule = outcome.effects[1]
    assert isinstance(schedule, ScheduleFollowUp) and schedule.kind == "weekly_checkup"
    assert schedule.payload == {"local_time": "18:00", "asked": True, "weekday": "sun"}
    assert schedule.delay_minutes == (5 * 24 + 3) * 60  # Sunday 6 December, 18:00


def test_without_a_time_the_person_is_asked_when() -> None:
    asked = router.step(UK, said("can you remind me"))
    assert asked.state.flow == reminders.NAME and not asked.effects
    assert "rem:when:in30" in asked.replies[0].payloads()
    tapped = router.step(asked.state, pressed("rem:when:in30"))
    assert ScheduleFollowUp(reminders.REMINDER_KIND, 30, {"asked": True}) in tapped.effects
    typed = router.step(asked.state, said("in 2 hours", intent="out_of_scope"))
    assert ScheduleFollowUp(reminders.REMINDER_KIND, 120, {"asked": True}) in typed.effects


def test_a_country_with_several_zones_asks_which_one_first() -> None:
    asked = router.step(US, said("every evening at 8"))
    assert asked.state.step == reminders.Step.ASK_ZONE and not asked.effects
    labels = [b.label for row in asked.replies[0].buttons for b in row]
    assert "Pacific (Los Angeles)" in labels
    pacific = labels.index("Pacific (Los Angeles)")
    chosen = router.step(asked.state, pressed(f"rem:tz:{pacific}"))
    assert chosen.effects[0] == SetTimezone("America/Los_Angeles")
    schedule = chosen.effects[2]
    # 15:00 UTC is 07:00 in Los Angeles: 20:00 there is 13 hours away.
    assert isinstance(schedule, ScheduleFollowUp) and schedule.delay_minutes == 13 * 60
    assert chosen.state.person.timezone == "America/Los_Angeles"
    assert router.step(asked.state, pressed("rem:tz:99")).effects == ()


def test_without_a_clock_no_time_is_guessed() -> None:
    outcome = router.step(UK, said("remind me in 30 minutes", now=None))
    assert not outcome.effects


@pytest.mark.parametrize(
    ("message", "effects"),
    [
        ("pause reminders for a week", (PauseFollowUps(7),)),
        ("no messages today please", (PauseFollowUps(1),)),
        ("stop for 3 days", (PauseFollowUps(3),)),
        ("stop all messages", (CancelFollowUps(), PauseFollowUps(None))),
        ("please leave me alone", (CancelFollowUps(), PauseFollowUps(None))),
    ],
)
def test_stop_reminders_pauses_or_stops_when_the_message_says_which(
    message: str, effects: tuple[object, ...]
) -> None:
    outcome = router.step(UK, said(message, intent="stop_reminders"))
    assert outcome.effects == effects
    assert outcome.state.flow is None


def test_stop_reminders_otherwise_offers_the_choice() -> None:
    asked = router.step(UK, said("too many messages", intent="stop_reminders"))
    assert asked.replies[0].payloads() == {"rem:pause:1", "rem:pause:7", "rem:stop", "rem:keep"}
    assert router.step(asked.state, pressed("rem:pause:7")).effects == (PauseFollowUps(7),)
    assert router.step(asked.state, pressed("rem:stop")).effects == (
        CancelFollowUps(),
        PauseFollowUps(None),
    )
    assert router.step(asked.state, pressed("rem:keep")).effects == ()
    assert router.step(asked.state, pressed("rem:pause:365")).effects == ()  # forged


def followup(state: State, kind: str, **details: object) -> Outcome:
    """A follow-up of this kind comes due."""
    return router.step(state, Event(EventKind.FOLLOWUP, payload=kind, now=NOW, details=details))


def test_a_reminder_says_hello_and_offers_ways_in() -> None:
    outcome = followup(UK, reminders.REMINDER_KIND)
    assert "You asked me to check in" in outcome.replies[0].text
    checkin = router.step(outcome.state, pressed("rem:fired:checkin"))
    assert checkin.state.flow == "checkin"


def test_a_recovery_checkup_asks_the_weekly_questions_in_one_message() -> None:
    outcome = followup(UK, reminders.RECOVERY_CHECKUP_KIND)
    assert len(outcome.replies) == 1 and "recovery checkup" in outcome.replies[0].text
    assert outcome.state.flow == "checkin" and outcome.replies[0].buttons


def test_a_re_engagement_offers_a_way_out() -> None:
    outcome = followup(UK, reminders.REENGAGEMENT_KIND)
    assert "rem:stop" in outcome.replies[0].payloads()
    stopped = router.step(outcome.state, pressed("rem:stop"))
    assert PauseFollowUps(None) in stopped.effects


def test_milestones_name_the_days_or_years() -> None:
    assert "30 days" in followup(UK, reminders.MILESTONE_KIND, days=30).replies[0].text
    assert "One year" in followup(UK, reminders.MILESTONE_KIND, days=365, years=1).replies[0].text
    assert "2 years" in followup(UK, reminders.MILESTONE_KIND, days=730, years=2).replies[0].text
    assert followup(UK, reminders.MILESTONE_KIND).replies == ()


async def test_set_and_stop_reminders_through_the_whole_service(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    answer = await chat.say("remind me in 30 minutes")
    assert "check in with you in 30 minutes" in answer
    answer = await chat.say("stop all messages please")
    assert "stopped all scheduled messages" in answer
