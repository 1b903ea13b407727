"""The scheduling rules on their own: quiet hours, misfire grace, pauses, recurrence in local
time, adaptive checkups, one re-engagement, milestones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.followup_rules import (
    CRAVING_CHECKBACK,
    CRISIS_CHECKBACK,
    DAILY_CHECKIN,
    MILESTONE,
    RECOVERY_CHECKUP,
    REMINDER,
    STOPPED_UNTIL,
    WEEKLY_CHECKUP,
    Action,
    CheckInFacts,
    CheckupSignals,
    PersonFacts,
    QuietHours,
    checkup_signals,
    decide,
    next_checkup_days,
    next_milestone,
    next_occurrence,
    pause_until,
    plan_milestone,
    plan_recovery_checkup,
    plan_reengagement,
    quiet_until,
    retry_delay,
    tightened_checkup_due,
)
from flows.timezones import country_zones, zone_for

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def person(**changes: object) -> PersonFacts:
    """An active, consenting person in London."""
    values: dict[str, object] = {
        "active": True,
        "paused_until": None,
        "consent_checkins": True,
        "zone": LONDON,
        "recovery_start": None,
    }
    values.update(changes)
    return PersonFacts(**values)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- zones -------------------------------------------------------------------------------------


def test_zone_comes_from_the_person_then_the_country_then_utc() -> None:
    assert zone_for("Asia/Tokyo", "United States") == "Asia/Tokyo"
    assert zone_for(None, "United States") == "America/New_York"
    assert zone_for(None, "us") == "America/New_York"
    assert zone_for("Not/AZone", "Ireland") == "Europe/Dublin"
    assert zone_for(None, None) == "UTC"
    assert zone_for(None, "Atlantis") == "UTC"
    assert len(country_zones("Russia")) > 5 and len(country_zones("France")) == 1


# --- quiet hours ------------------------------------------------------------------------------


def test_quiet_hours_span_midnight_in_local_time() -> None:
    # 23:30 in London (winter, UTC+0): quiet until 08:00 the next morning.
    assert quiet_until(utc(2026, 12, 1, 23, 30), LONDON) == utc(2026, 12, 2, 8, 0)
    # 06:00 in London: quiet until 08:00 the same day.
    assert quiet_until(utc(2026, 12, 2, 6, 0), LONDON) == utc(2026, 12, 2, 8, 0)
    # 12:00 in London: not quiet.
    assert quiet_until(utc(2026, 12, 2, 12, 0), LONDON) is None
    # 03:00 UTC is 22:00 in New York (UTC-5): quiet until 08:00 New York time = 13:00 UTC.
    assert quiet_until(utc(2026, 12, 2, 3, 0), NEW_YORK) == utc(2026, 12, 2, 13, 0)


def test_quiet_hours_end_follows_summer_time() -> None:
    # The night the clocks go forward in the UK (29 March 2026): 08:00 BST is 07:00 UTC.
    assert quiet_until(utc(2026, 3, 29, 0, 30), LONDON) == utc(2026, 3, 29, 7, 0)


def test_custom_quiet_hours_within_one_day() -> None:
    quiet = QuietHours(time(13, 0), time(14, 0))
    assert quiet_until(utc(2026, 12, 2, 13, 30), LONDON, quiet) == utc(2026, 12, 2, 14, 0)
    assert quiet_until(utc(2026, 12, 2, 23, 30), LONDON, quiet) is None


def test_a_daily_check_in_at_night_waits_for_the_morning() -> None:
    now = utc(2026, 12, 1, 23, 0)
    decision = decide(DAILY_CHECKIN, {}, now, now, person())
    assert decision.action is Action.DEFER and decision.until == utc(2026, 12, 2, 8, 0)


@pytest.mark.parametrize("kind", [CRAVING_CHECKBACK, CRISIS_CHECKBACK, REMINDER])
def test_a_check_back_the_person_asked_for_ignores_quiet_hours(kind: str) -> None:
    now = utc(2026, 12, 1, 23, 0)
    assert decide(kind, {}, now, now, person()).action is Action.DELIVER


def test_a_daily_time_the_person_chose_ignores_quiet_hours() -> None:
    now = utc(2026, 12, 1, 23, 0)
    assert decide(DAILY_CHECKIN, {"asked": True}, now, now, person()).action is Action.DELIVER


# --- re-checking the person -------------------------------------------------------------------


def test_inactive_people_get_nothing() -> None:
    now = utc(2026, 12, 1, 12, 0)
    for kind in (CRAVING_CHECKBACK, CRISIS_CHECKBACK, DAILY_CHECKIN, REMINDER):
        assert decide(kind, {}, now, now, person(active=False)).action is Action.CANCEL


def test_a_pause_cancels_one_offs_and_skips_recurring_ones_but_not_a_crisis_check_back() -> None:
    now = utc(2026, 12, 1, 12, 0)
    paused = person(paused_until=now + timedelta(days=1))
    assert decide(REMINDER, {}, now, now, paused).action is Action.CANCEL
    assert decide(CRAVING_CHECKBACK, {}, now, now, paused).action is Action.CANCEL
    assert decide(DAILY_CHECKIN, {}, now, now, paused).action is Action.SKIP
    assert decide(CRISIS_CHECKBACK, {}, now, now, paused).action is Action.DELIVER
    ended = person(paused_until=now - timedelta(minutes=1))
    assert decide(REMINDER, {}, now, now, ended).action is Action.DELIVER
    stopped = person(paused_until=STOPPED_UNTIL)
    assert decide(WEEKLY_CHECKUP, {}, now, now, stopped).action is Action.SKIP


def test_pause_until() -> None:
    now = utc(2026, 12, 1, 12, 0)
    assert pause_until(now, 7) == now + timedelta(days=7)
    assert pause_until(now, None) == STOPPED_UNTIL
    assert pause_until(now, 0) is None


def test_check_ins_need_consent_unless_the_person_set_them_up() -> None:
    now = utc(2026, 12, 1, 12, 0)
    no = person(consent_checkins=False)
    assert decide(RECOVERY_CHECKUP, {}, now, now, no).action is Action.CANCEL
    assert decide(DAILY_CHECKIN, {}, now, now, no).action is Action.CANCEL
    assert decide(DAILY_CHECKIN, {"asked": True}, now, now, no).action is Action.DELIVER
    assert decide(CRAVING_CHECKBACK, {}, now, now, no).action is Action.DELIVER


def test_a_milestone_for_an_old_start_date_is_cancelled() -> None:
    now = utc(2026, 12, 1, 12, 0)
    start = date(2026, 11, 1)
    payload = {"days": 30, "start": start.isoformat()}
    assert (
        decide(MILESTONE, payload, now, now, person(recovery_start=start)).action is Action.DELIVER
    )
    moved = person(recovery_start=date(2026, 11, 20))
    assert decide(MILESTONE, payload, now, now, moved).action is Action.CANCEL


# --- misfire ----------------------------------------------------------------------------------


def test_a_check_back_late_by_less_than_its_grace_runs_once_an_older_one_is_skipped() -> None:
    due = utc(2026, 12, 1, 12, 0)
    late = due + timedelta(minutes=50)
    assert decide(CRAVING_CHECKBACK, {}, due, late, person()).action is Action.DELIVER
    assert decide(CRAVING_CHECKBACK, {}, due, due + timedelta(hours=2), person()).action is (
        Action.SKIP
    )
    # A crisis check-back keeps a long grace: better late than never.
    assert decide(CRISIS_CHECKBACK, {}, due, due + timedelta(hours=6), person()).action is (
        Action.DELIVER
    )


def test_a_missed_nine_o_clock_check_in_is_not_sent_at_five_and_the_next_one_follows() -> None:
    due = utc(2026, 12, 1, 9, 0)
    afternoon = utc(2026, 12, 1, 17, 0)
    assert decide(DAILY_CHECKIN, {}, due, afternoon, person()).action is Action.SKIP
    # Down for three days: one next occurrence, tomorrow at 9, not a burst of three.
    payload = {"local_time": "09:00"}
    later = utc(2026, 12, 4, 17, 0)
    nxt = next_occurrence(DAILY_CHECKIN, "p", payload, LONDON, due, later)
    assert nxt is not None and nxt.due_at == utc(2026, 12, 5, 9, 0)


def test_retry_backoff_grows_and_is_capped() -> None:
    assert retry_delay(1) == timedelta(seconds=30)
    assert retry_delay(2) == timedelta(minutes=1)
    assert retry_delay(20) == timedelta(minutes=30)


# --- recurrence -------------------------------------------------------------------------------


def test_daily_check_in_recurs_at_the_chosen_local_time_across_a_clock_change() -> None:
    payload = {"local_time": "20:00"}
    # Saturday 24 October 2026 20:00 BST = 19:00 UTC; on Sunday the UK is back on GMT.
    due = utc(2026, 10, 24, 19, 0)
    nxt = next_occurrence(DAILY_CHECKIN, "p", payload, LONDON, due, due)
    assert nxt is not None
    assert nxt.due_at == utc(2026, 10, 25, 20, 0)  # still 20:00 on the local clock
    assert nxt.payload == payload and nxt.idempotency_key.endswith("20261025T200000")


def test_weekly_checkup_recurs_on_its_weekday() -> None:
    payload = {"weekday": "sun", "local_time": "18:00"}
    due = utc(2026, 12, 6, 18, 0)  # a Sunday
    nxt = next_occurrence(WEEKLY_CHECKUP, "p", payload, LONDON, due, due)
    assert nxt is not None and nxt.due_at == utc(2026, 12, 13, 18, 0)


def test_one_off_kinds_do_not_recur() -> None:
    due = utc(2026, 12, 1, 9, 0)
    assert next_occurrence(REMINDER, "p", {}, LONDON, due, due) is None


# --- adaptive recovery checkups ---------------------------------------------------------------


def test_checkups_are_monthly_at_first_then_space_out_while_all_is_well() -> None:
    well = CheckupSignals()
    spacing = [next_checkup_days(None, well)]
    for _ in range(5):
        spacing.append(next_checkup_days(spacing[-1], well))
    assert spacing == [30, 45, 60, 90, 90, 90]


def test_checkups_tighten_after_a_lapse_or_a_high_craving_or_a_request_for_help() -> None:
    lapse = checkup_signals([CheckInFacts("lapse", used=True)])
    craving = checkup_signals([CheckInFacts("craving", craving_level=9)])
    helped = checkup_signals([CheckInFacts("weekly", answers={"help": "yes"})])
    calm = checkup_signals([CheckInFacts("craving", craving_level=4), CheckInFacts("daily")])
    assert lapse.lapse and craving.high_craving and helped.asked_for_help
    assert not calm.concerning
    for signals in (lapse, craving, helped):
        assert next_checkup_days(90, signals) == 14
    assert next_checkup_days(14, calm) == 30  # and back to monthly once things settle


def test_a_planned_checkup_is_at_six_in_the_evening_local_time() -> None:
    planned = plan_recovery_checkup("p", utc(2026, 12, 1, 10, 0), None, CheckupSignals(), NEW_YORK)
    assert planned.kind == RECOVERY_CHECKUP
    assert planned.due_at == utc(2026, 12, 31, 23, 0)  # 18:00 in New York
    assert planned.payload == {"interval_days": 30}


def test_a_lapse_brings_a_far_checkup_forward_to_within_a_week() -> None:
    pending = utc(2027, 2, 1, 18, 0)
    earlier = tightened_checkup_due(pending, utc(2026, 12, 1, 9, 0), LONDON)
    assert earlier == utc(2026, 12, 8, 18, 0)
    assert tightened_checkup_due(utc(2026, 12, 3, 18, 0), utc(2026, 12, 1, 9, 0), LONDON) is None


# --- re-engagement and milestones -------------------------------------------------------------


def test_one_gentle_hello_after_thirty_silent_days_and_never_a_second() -> None:
    now = utc(2026, 12, 1, 12, 0)
    assert plan_reengagement("p", now - timedelta(days=10), now, False, LONDON) is None
    planned = plan_reengagement("p", now - timedelta(days=31), now, False, LONDON)
    assert planned is not None and planned.due_at == utc(2026, 12, 1, 18, 0)
    assert planned.idempotency_key == "followup:p:reengagement"  # one per person, ever
    assert plan_reengagement("p", now - timedelta(days=31), now, True, LONDON) is None


def test_milestones_follow_the_start_date_and_are_never_sent_late() -> None:
    start = date(2026, 1, 1)
    assert next_milestone(start, date(2026, 1, 1)) == (date(2026, 1, 2), 1, 0)
    assert next_milestone(start, date(2026, 1, 20)) == (date(2026, 1, 31), 30, 0)
    assert next_milestone(start, date(2026, 12, 1)) == (date(2027, 1, 1), 365, 1)
    assert next_milestone(start, date(2027, 6, 1))[2] == 2
    leap = next_milestone(date(2024, 2, 29), date(2025, 1, 1))
    assert leap[0] == date(2025, 2, 28) and leap[2] == 1


def test_a_planned_milestone_is_mid_morning_and_today_s_passes_if_the_time_is_gone() -> None:
    start = date(2026, 11, 1)
    morning = plan_milestone("p", start, utc(2026, 12, 1, 8, 0), LONDON)
    assert morning is not None and morning.due_at == utc(2026, 12, 1, 10, 0)
    assert morning.payload == {"days": 30, "years": 0, "start": "2026-11-01"}
    evening = plan_milestone("p", start, utc(2026, 12, 1, 15, 0), LONDON)
    assert evening is not None and evening.payload["days"] == 60
