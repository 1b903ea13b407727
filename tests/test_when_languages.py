"""Reminder times typed in Spanish and Russian, read as exactly as the English ones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from flows import reminders, router
from flows.engine import Event, EventKind, Person, ScheduleFollowUp, State
from flows.when import Daily, OneOff, Weekly, parse_when
from nlu.understanding import IntentScore, Understanding

MADRID = ZoneInfo("Europe/Madrid")
MOSCOW = ZoneInfo("Europe/Moscow")
# Tuesday 1 December 2026, 15:00 UTC: 16:00 in Madrid, 18:00 in Moscow.
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def madrid(day: int, hour: int, minute: int = 0) -> OneOff:
    """A December 2026 Madrid time (UTC+1)."""
    return OneOff(datetime(2026, 12, day, hour, minute, tzinfo=MADRID).astimezone(UTC))


def moscow(day: int, hour: int, minute: int = 0) -> OneOff:
    """A December 2026 Moscow time (UTC+3)."""
    return OneOff(datetime(2026, 12, day, hour, minute, tzinfo=MOSCOW).astimezone(UTC))


def later(minutes: int) -> OneOff:
    return OneOff(NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("en 30 minutos", later(30)),
        ("recuérdamelo en 30 minutos porfa", later(30)),
        ("en 5 min", later(5)),
        ("en cinco minutos", later(5)),
        ("dentro de una hora", later(60)),
        ("en una hora", later(60)),
        ("en media hora", later(30)),
        ("dentro de media hora", later(30)),
        ("en 2 horas", later(120)),
        ("en una hora y media", later(90)),
        ("mañana a las 9", madrid(2, 9)),
        ("manana a las 9", madrid(2, 9)),
        ("escríbeme mañana a las 9 de la mañana", madrid(2, 9)),
        ("mañana a las 9 de la noche", madrid(2, 21)),
        ("mañana por la mañana", madrid(2, 9)),
        ("mañana a las 21:30", madrid(2, 21, 30)),
        ("mañana a las nueve y media", madrid(2, 9, 30)),
        ("mañana a las 8 menos cuarto", madrid(2, 7, 45)),
        ("pasado mañana a las 10", madrid(3, 10)),
        ("a las 8", madrid(1, 20)),  # 08:00 has passed in Madrid: 20:00
        ("hoy a las 7 de la tarde", madrid(1, 19)),
        ("esta noche a las 10", madrid(1, 22)),
        ("esta tarde", madrid(2, 15)),  # 15:00 has passed today
        ("a la 1 de la madrugada", madrid(2, 1)),
        ("el domingo a las 6 de la tarde", madrid(6, 18)),
        ("el viernes a las 18:00", madrid(4, 18)),
        ("el miércoles a mediodía", madrid(2, 12)),
        ("el martes que viene a las 9", madrid(8, 9)),
        ("el 3 de diciembre a las 17:00", madrid(3, 17)),
        ("todas las noches a las 8", Daily(time(20, 0))),
        ("cada día a las 9", Daily(time(9, 0))),
        ("todos los días a las 20:00", Daily(time(20, 0))),
        ("todos los dias a las 8 de la mañana", Daily(time(8, 0))),
        ("cada mañana", Daily(time(9, 0))),
        ("todas las noches", Daily(time(21, 0))),
        ("a diario a las 7:30", Daily(time(7, 30))),
        ("cada domingo a las 6 de la tarde", Weekly("sun", time(18, 0))),
        ("los lunes a las 10", Weekly("mon", time(10, 0))),
        ("todos los sábados a las 11", Weekly("sat", time(11, 0))),
    ],
)
def test_spanish_times(message: str, expected: object) -> None:
    assert parse_when(message, NOW, MADRID, "es") == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("через 30 минут", later(30)),
        ("напомни через 30 минут пожалуйста", later(30)),
        ("через 5 мин", later(5)),
        ("через пять минут", later(5)),
        ("через час", later(60)),
        ("через полчаса", later(30)),
        ("через пол часа", later(30)),
        ("через 2 часа", later(120)),
        ("через полтора часа", later(90)),
        ("через пару часов", later(120)),
        ("завтра в 9", moscow(2, 9)),
        ("напиши мне завтра в 9 утра", moscow(2, 9)),
        ("завтра в 9 вечера", moscow(2, 21)),
        ("завтра утром", moscow(2, 9)),
        ("завтра в 21:30", moscow(2, 21, 30)),
        ("завтра в девять", moscow(2, 9)),
        ("завтра в 9 часов вечера", moscow(2, 21)),
        ("послезавтра в 10", moscow(3, 10)),
        ("в 8", moscow(1, 20)),  # 18:00 in Moscow: 20:00 is still ahead
        ("сегодня в 7 вечера", moscow(1, 19)),
        ("сегодня вечером в 10", moscow(1, 22)),
        ("в 2 ночи", moscow(2, 2)),
        ("в 11 ночи", moscow(1, 23)),
        ("в воскресенье в 18:00", moscow(6, 18)),
        ("в пятницу в 6 вечера", moscow(4, 18)),
        ("во вторник в 9 утра", moscow(8, 9)),  # today is Tuesday and 9 has passed
        ("во вторник в 9", moscow(1, 21)),  # today, and 21:00 is still ahead
        ("в следующую среду в полдень", moscow(2, 12)),
        ("3 декабря в 17:00", moscow(3, 17)),
        ("каждый вечер в 8", Daily(time(20, 0))),
        ("каждый день в 9 утра", Daily(time(9, 0))),
        ("каждый день в 9", Daily(time(9, 0))),
        ("ежедневно в 20:00", Daily(time(20, 0))),
        ("каждое утро", Daily(time(9, 0))),
        ("по вечерам в 9", Daily(time(21, 0))),
        ("каждый вечер", Daily(time(19, 0))),
        ("каждое воскресенье в 18:00", Weekly("sun", time(18, 0))),
        ("по воскресеньям в 6 вечера", Weekly("sun", time(18, 0))),
        ("каждую пятницу в 10", Weekly("fri", time(10, 0))),
        ("каждый понедельник в 8 утра", Weekly("mon", time(8, 0))),
    ],
)
def test_russian_times(message: str, expected: object) -> None:
    assert parse_when(message, NOW, MOSCOW, "ru") == expected


@pytest.mark.parametrize(
    ("lang", "message"),
    [
        ("es", "recuérdamelo"),
        ("es", "escríbeme luego"),
        ("es", "mañana"),  # a day without a time is asked about, not guessed ... see below
        ("es", "en 0 minutos"),
        ("es", "en 200 días"),
        ("es", "a las 25"),
        ("es", "tengo 2 hijos y 3 perros"),
        ("es", "la mañana fue dura"),
        ("es", "la tarde fue muy dura"),
        ("es", "anoche no dormí nada"),
        ("ru", "напомни"),
        ("ru", "напиши попозже"),
        ("ru", "через 0 минут"),
        ("ru", "в 25"),
        ("ru", "мне 35 лет"),
        ("ru", "у меня 2 детей"),
        ("ru", "вечер был тяжёлый"),
        ("ru", "всю ночь не спал"),
    ],
)
def test_no_time_or_an_impossible_one_is_not_guessed(lang: str, message: str) -> None:
    zone = MADRID if lang == "es" else MOSCOW
    found = parse_when(message, NOW, zone, lang)
    if message == "mañana":
        # "tomorrow" alone is tomorrow morning, as in English ("tomorrow" -> 09:00).
        assert found == madrid(2, 9)
    else:
        assert found is None


@pytest.mark.parametrize("lang", ["es", "ru"])
def test_english_times_still_work_for_everyone(lang: str) -> None:
    # The quick-choice buttons send English phrases; some people type English anyway.
    assert parse_when("in 30 minutes", NOW, MADRID, lang) == later(30)
    assert parse_when("every evening at 8pm", NOW, MADRID, lang) == Daily(time(20, 0))


def test_a_spanish_speaker_asking_at_the_when_step_gets_a_spanish_confirmation() -> None:
    spain = State(
        person=Person(
            language="es",
            country="Spain",
            timezone="Europe/Madrid",
            consent_checkins=True,
            onboarded=True,
        )
    )
    ask = Understanding("recuérdamelo", IntentScore("set_reminder", 0.9))
    asked = router.step(
        spain, Event(EventKind.TEXT, text="recuérdamelo", understanding=ask, now=NOW)
    )
    assert asked.state.step == reminders.Step.ASK_WHEN
    words = "mañana a las 9"
    typed = Understanding(words, IntentScore("out_of_scope", 0.4))
    answer = router.step(
        asked.state, Event(EventKind.TEXT, text=words, understanding=typed, now=NOW)
    )
    assert ScheduleFollowUp(reminders.REMINDER_KIND, 17 * 60, {"asked": True}) in answer.effects
    assert "mañana a las 09:00" in answer.replies[0].text


def test_a_russian_speaker_every_evening_becomes_a_daily_check_in() -> None:
    russia = State(
        person=Person(
            language="ru",
            country="Russia",
            timezone="Europe/Moscow",
            consent_checkins=True,
            onboarded=True,
        )
    )
    words = "напоминай мне каждый вечер в 8"
    said = Understanding(words, IntentScore("set_reminder", 0.9))
    answer = router.step(russia, Event(EventKind.TEXT, text=words, understanding=said, now=NOW))
    schedule = answer.effects[1]
    assert isinstance(schedule, ScheduleFollowUp) and schedule.kind == "daily_checkin"
    assert schedule.payload == {"local_time": "20:00", "asked": True}
    assert schedule.delay_minutes == 2 * 60  # 18:00 in Moscow
