"""Understanding when a person wants to hear from us: "in 30 minutes", "tomorrow at 9",
"every evening at 8", "remind me daily at 9am", "every sunday at 6pm"; "en 30 minutos",
"mañana a las 9", "todas las noches a las 8"; "через час", "завтра в 9", "каждый вечер в 8".

Pure: the caller gives `now`, the person's zone and language. Common phrasings are matched by
each language's rules below, because they must be exact ("tomorrow at 9" is 09:00, not the
current time of day tomorrow, which is what dateparser 1.5 returns, in every language);
dateparser reads the rest ("on 3 December at 5pm", "el 3 de diciembre", "через 2 дня"). A
language without rules of its own gets the English ones, which also read what a Spanish or
Russian speaker types in English (and the quick-choice buttons' English phrases).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

__all__ = ["RULES", "Daily", "OneOff", "Rules", "Weekly", "When", "parse_when"]

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
# Parts of the day, as every language's words map to them, and the time each stands for alone.
# "late_night" is a night that also runs past midnight: "в 2 ночи", "a la 1 de la madrugada".
_PARTS = {
    "morning": time(9),
    "afternoon": time(15),
    "evening": time(19),
    "night": time(21),
    "tonight": time(21),
    "late_night": time(22),
}


@dataclass(frozen=True)
class Rules:
    """One language's words for times. Patterns run on `prepare(text)` (lowercased, spaces
    squeezed); see _EN for the groups each must have."""

    relative: re.Pattern[str]  # amount (optional: "через час"), unit, half (optional)
    half_hour: re.Pattern[str]
    amounts: Mapping[str, float]
    hour_units: tuple[str, ...]  # how the units that mean hours begin
    clock: re.Pattern[str]  # at (the word for "at"), hour, minute, meridiem
    meridiems: Mapping[str, str]  # how a meridiem begins -> am | pm | a part of the day
    noon: re.Pattern[str]  # group 1: a word in noon_words
    noon_words: Mapping[str, int]
    daily: re.Pattern[str]
    weekly: re.Pattern[str]  # group 1: the weekday's word
    weekday: re.Pattern[str]  # day, next (optional)
    weekday_stems: tuple[str, ...]  # how each weekday's words begin, Monday first
    parts: tuple[tuple[re.Pattern[str], str], ...]  # (pattern, part of the day)
    tomorrow: re.Pattern[str]
    day_after: re.Pattern[str]
    today: re.Pattern[str]
    tonight: re.Pattern[str]
    date: re.Pattern[str]  # a calendar date: dateparser's part
    dateparser: str
    prepare: Callable[[str], str] = field(default=lambda text: text)

    def weekday_of(self, word: str) -> str:
        """ "sunday", "domingos", "воскресенье" -> "sun"."""
        for index, stem in enumerate(self.weekday_stems):
            if word.startswith(stem):
                return WEEKDAYS[index]
        raise ValueError(word)  # pragma: no cover - the patterns only match weekdays

    def meridiem_part(self, meridiem: str | None) -> str | None:
        if not meridiem:
            return None
        for start in sorted(self.meridiems, key=len, reverse=True):
            if meridiem.startswith(start):
                return self.meridiems[start]
        return None

    def part_of_day(self, text: str) -> str | None:
        """The part of the day the text names first, if any."""
        found = [(m.start(), part) for pattern, part in self.parts if (m := pattern.search(text))]
        return min(found)[1] if found else None


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# --- English ----------------------------------------------------------------------------------

_EN_WEEKDAY = (
    r"(mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs|rsday)?|fri(?:day)?|"
    r"sat(?:urday)?|sun(?:day)?)"
)
_EN_NUMBERS = ("one", "two", "three", "four", "five", "six")
_EN = Rules(
    relative=_c(
        r"\bin\s+(?P<amount>\d+(?:\.\d+)?|half an?|an?|one|two|three|four|five|six)\s*"
        r"(?P<unit>minutes?|mins?|m|hours?|hrs?|h)\b"
    ),
    half_hour=_c(r"\bin\s+(?:an?\s+)?half\s+(?:an\s+)?hour\b"),
    amounts={"a": 1.0, "an": 1.0, "half an": 0.5, "half a": 0.5}
    | {w: float(i) for i, w in enumerate(_EN_NUMBERS, 1)},
    hour_units=("h",),
    clock=_c(
        r"(?<![\d:])(?P<at>\bat\s+|@\s*)?(?P<hour>\d{1,2})(?:[:.h](?P<minute>\d{2}))?\s*"
        r"(?P<meridiem>a\.?m\.?|p\.?m\.?)?(?![\d:])"
    ),
    meridiems={"a": "am", "p": "pm"},
    noon=_c(r"\b(noon|midday|midnight)\b"),
    noon_words={"noon": 12, "midday": 12, "midnight": 0},
    daily=_c(
        r"\b(?:daily|every\s*day|each\s+day|everyday|nightly|"
        r"(?:every|each)\s+(?:morning|afternoon|evening|night))\b"
    ),
    weekly=_c(r"\b(?:every|each)\s+" + _EN_WEEKDAY + r"\b"),
    weekday=_c(r"\b(?:on\s+|(?P<next>next)\s+|this\s+)?(?P<day>" + _EN_WEEKDAY[1:-1] + r")\b"),
    weekday_stems=WEEKDAYS,
    parts=tuple(
        (_c(rf"\b{word}\b"), word)
        for word in ("morning", "afternoon", "evening", "tonight", "night")
    ),
    tomorrow=_c(r"\btomorrow\b"),
    day_after=_c(r"\bday after tomorrow\b"),
    today=_c(r"\btoday\b"),
    tonight=_c(r"\btonight\b"),
    date=_c(
        r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b\d{1,2}[/.-]\d{1,2}\b|"
        r"\bin\s+\d+\s+(?:days?|weeks?)\b"
    ),
    dateparser="en",
)


# --- Spanish (accents folded first: people often type "manana", "miercoles") -----------------

_ES_HOURS: tuple[str, ...] = (
    "una",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
)
_ES_HOUR_WORD = re.compile(
    r"\b(a\s+las?|sobre\s+las?|hacia\s+las?)\s+(" + "|".join(_ES_HOURS) + r")\b"
)
_ES_HALF = re.compile(r"\b(\d{1,2})\s+y\s+(media|cuarto)\b")
_ES_TO = re.compile(r"\b(\d{1,2})\s+menos\s+cuarto\b")


def _fold(text: str) -> str:
    """Without accents ("mañana" -> "manana"), as many people type on a phone anyway."""
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _prepare_es(text: str) -> str:
    text = _fold(text)
    text = _ES_HOUR_WORD.sub(lambda m: f"{m.group(1)} {_ES_HOURS.index(m.group(2)) + 1}", text)
    text = _ES_HALF.sub(lambda m: f"{m.group(1)}:{30 if m.group(2) == 'media' else 15}", text)
    return _ES_TO.sub(lambda m: f"{(int(m.group(1)) - 1) % 24}:45", text)


_ES_DAYS = r"(lunes|martes|miercoles|jueves|viernes|sabados?|domingos?)"
_ES_NUMBERS = {"un": 1.0, "una": 1.0, "uno": 1.0, "dos": 2.0, "tres": 3.0, "cuatro": 4.0}
_ES_NUMBERS |= {"cinco": 5.0, "seis": 6.0, "diez": 10.0, "quince": 15.0, "veinte": 20.0}
_ES_NUMBERS |= {"treinta": 30.0, "cuarenta": 40.0, "cuarenta y cinco": 45.0}
_ES = Rules(
    relative=_c(
        r"\b(?:en|dentro\s+de)\s+(?P<amount>\d+(?:[.,]\d+)?|cuarenta\s+y\s+cinco|"
        + "|".join(sorted(_ES_NUMBERS, key=len, reverse=True))
        + r")\s*(?P<unit>minutos?|mins?|m|horas?|hrs?|h)\b(?P<half>\s+y\s+media)?"
    ),
    half_hour=_c(r"\b(?:en|dentro\s+de)\s+(?:una\s+)?media\s+hora\b"),
    amounts=_ES_NUMBERS,
    hour_units=("h",),
    clock=_c(
        r"(?<![\d:])(?P<at>\b(?:a|sobre|hacia)\s+las?\s+|@\s*)?(?P<hour>\d{1,2})"
        r"(?:[:.h](?P<minute>\d{2}))?\s*(?:h\b|hrs?\b|horas?\b)?\s*"
        r"(?P<meridiem>a\.?\s?m\.?|p\.?\s?m\.?|de\s+la\s+(?:manana|tarde|noche|madrugada)|"
        r"del\s+mediodia)?(?![\d:])"
    ),
    meridiems={
        "a": "am",
        "p": "pm",
        "de la manana": "morning",
        "de la tarde": "afternoon",
        "de la noche": "late_night",
        "de la madrugada": "late_night",
        "del mediodia": "afternoon",
    },
    noon=_c(r"\b(mediodia|medianoche)\b"),
    noon_words={"mediodia": 12, "medianoche": 0},
    daily=_c(
        r"\b(?:todos\s+los\s+dias|cada\s+dia|a\s+diario|diariamente|"
        r"todas\s+las\s+(?:mananas|tardes|noches)|cada\s+(?:manana|tarde|noche)|"
        r"por\s+las\s+(?:mananas|tardes|noches))\b"
    ),
    weekly=_c(r"\b(?:cada|todos\s+los|los)\s+" + _ES_DAYS + r"\b"),
    weekday=_c(
        r"\b(?:(?:el|este)\s+)?(?:(?P<next>proximo)\s+)?"
        r"(?P<day>lunes|martes|miercoles|jueves|viernes|sabado|domingo)\b"
        r"(?P<next_after>\s+que\s+viene)?"
    ),
    weekday_stems=("lun", "mar", "mie", "jue", "vie", "sab", "dom"),
    parts=(
        (_c(r"\b(?:por|de|en)\s+la\s+manana\b|\bmananas\b|\bcada\s+manana\b"), "morning"),
        (_c(r"\bmadrugada\b"), "late_night"),
        (_c(r"\besta\s+noche\b"), "tonight"),
        (
            _c(r"\b(?:por|de|en|esta|cada)\s+la\s+tarde\b|\btardes\b|\b(?:esta|cada)\s+tarde\b"),
            "afternoon",
        ),
        (_c(r"\b(?:por|de|en)\s+la\s+noche\b|\bnoches\b|\bcada\s+noche\b"), "night"),
    ),
    tomorrow=_c(r"(?<!la )\bmanana\b"),
    day_after=_c(r"\bpasado\s+manana\b"),
    today=_c(r"\bhoy\b"),
    tonight=_c(r"\besta\s+noche\b"),
    date=_c(
        r"\b(?:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|"
        r"noviembre|diciembre)\b|\b\d{1,2}/\d{1,2}\b|"
        r"\b(?:en|dentro\s+de)\s+(?:\d+|una?|dos|tres)\s+(?:dias?|semanas?)\b"
    ),
    dateparser="es",
    prepare=_prepare_es,
)


# --- Russian ("ё" read as "е") -----------------------------------------------------------------

_RU_HOURS = {"час": 1, "два": 2, "три": 3, "четыре": 4, "пять": 5, "шесть": 6, "семь": 7}
_RU_HOURS |= {"восемь": 8, "девять": 9, "десять": 10, "одиннадцать": 11, "двенадцать": 12}
_RU_HOUR_WORD = re.compile(r"\b(в|к|около)\s+(" + "|".join(_RU_HOURS) + r")\b(?!\s+(?:минут|час))")


def _prepare_ru(text: str) -> str:
    text = text.replace("ё", "е")
    return _RU_HOUR_WORD.sub(lambda m: f"{m.group(1)} {_RU_HOURS[m.group(2)]}", text)


_RU_DAYS = r"(понедельник\w*|вторник\w*|сред\w*|четверг\w*|пятниц\w*|суббот\w*|воскресень\w*)"
_RU_NUMBERS = {"один": 1.0, "одну": 1.0, "пару": 2.0, "два": 2.0, "две": 2.0, "три": 3.0}
_RU_NUMBERS |= {"четыре": 4.0, "пять": 5.0, "шесть": 6.0, "десять": 10.0, "пятнадцать": 15.0}
_RU_NUMBERS |= {"двадцать": 20.0, "тридцать": 30.0, "сорок": 40.0, "полтора": 1.5}
_RU_NUMBERS |= {"полторы": 1.5, "сорок пять": 45.0}
_RU = Rules(
    relative=_c(
        r"\bчерез\s+(?:(?P<amount>\d+(?:[.,]\d+)?|"
        + "|".join(sorted(_RU_NUMBERS, key=len, reverse=True))
        + r")\s*)?(?P<unit>минут\w*|мин|м|час\w*|ч)(?!\w)"
    ),
    half_hour=_c(r"\bчерез\s+(?:полчаса|пол\s+часа)(?!\w)"),
    amounts=_RU_NUMBERS,
    hour_units=("ч",),
    clock=_c(
        r"(?<![\d:])(?P<at>\b(?:в|во|к|около)\s+|@\s*)?(?P<hour>\d{1,2})"
        r"(?:[:.](?P<minute>\d{2}))?(?:\s*час(?:а|ов)?(?!\w))?\s*"
        r"(?P<meridiem>утра|дня|вечера|ночи)?(?![\d:])"
    ),
    meridiems={"утра": "morning", "дня": "afternoon", "вечера": "evening", "ночи": "late_night"},
    noon=_c(r"\b(полдень|полночь)(?!\w)"),
    noon_words={"полдень": 12, "полночь": 0},
    daily=_c(
        r"\b(?:каждый\s+(?:божий\s+)?день|ежедневно|каждое\s+утро|каждый\s+вечер|каждую\s+ночь|"
        r"по\s+утрам|по\s+вечерам|по\s+ночам|каждым\s+(?:утром|вечером))(?!\w)"
    ),
    weekly=_c(r"\b(?:кажд\w+|по)\s+" + _RU_DAYS + r"(?!\w)"),
    weekday=_c(
        r"(?:\b(?P<next>следующ\w*)\s+)?"
        r"\b(?P<day>понедельник|вторник|сред[ау]|четверг|пятниц[ау]|суббот[ау]|воскресенье)(?!\w)"
    ),
    weekday_stems=("пон", "вт", "ср", "чет", "пят", "суб", "вос"),
    parts=(
        # Adverbs ("вечером"), or the noun after "каждый": "вечер был тяжёлый" names no time.
        (_c(r"\bутр(?:ом|ам)(?!\w)|\bкаждое\s+утро(?!\w)"), "morning"),
        (_c(r"\bдн[её]м(?!\w)"), "afternoon"),
        (_c(r"\bсегодня\s+вечером(?!\w)"), "tonight"),
        (_c(r"\bвечер(?:ом|ам)(?!\w)|\bкаждый\s+вечер(?!\w)"), "evening"),
        (_c(r"\bноч(?:ью|ам)(?!\w)|\bкаждую\s+ночь(?!\w)"), "late_night"),
    ),
    tomorrow=_c(r"\bзавтра(?!\w)"),
    day_after=_c(r"\bпослезавтра(?!\w)"),
    today=_c(r"\bсегодня(?!\w)"),
    tonight=_c(r"\bсегодня\s+вечером(?!\w)"),
    date=_c(
        r"\b(?:января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|"
        r"декабря)(?!\w)|\b\d{1,2}/\d{1,2}\b|\b\d{1,2}\.\d{1,2}\.\d{2,4}\b|"
        r"\bчерез\s+(?:\d+\s+)?(?:дн\w*|день|недел\w*)"
    ),
    dateparser="ru",
    prepare=_prepare_ru,
)

RULES: dict[str, Rules] = {"en": _EN, "es": _ES, "ru": _RU}


# --- reading a message ------------------------------------------------------------------------


def _meridiem_hour(hour: int, part: str | None) -> int | None:
    """24-hour clock from an hour and an am/pm or a part of the day (None: still ambiguous)."""
    if hour > 23:
        return None
    if part in ("am", "pm"):
        if hour > 12 or hour == 0:
            return None
        return (hour % 12) + (12 if part == "pm" else 0)
    if hour > 12 or hour == 0:
        return hour
    if part == "late_night":
        # "в 2 ночи" is 02:00, "в 11 ночи" 23:00, "a las 12 de la noche" midnight.
        return hour % 12 if hour <= 5 or hour == 12 else hour + 12
    if part in ("afternoon", "evening", "night", "tonight"):
        return hour if hour == 12 else hour + 12
    if part == "morning":
        return 0 if hour == 12 else hour
    return None


def _clock_in(rules: Rules, text: str, part: str | None) -> tuple[int, int, bool] | None:
    """(hour, minute, certain) of the first clock time in the text, if any."""
    noon = rules.noon.search(text)
    if noon:
        return rules.noon_words[noon.group(1)], 0, True
    for match in rules.clock.finditer(text):
        # A bare number is a clock time only after "at" / "@", or with minutes or am/pm.
        meridiem = rules.meridiem_part(match.group("meridiem"))
        if not (match.group("at") or match.group("minute") or meridiem):
            continue
        hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
        if minute > 59:
            continue
        resolved = _meridiem_hour(hour, meridiem or part)
        if resolved is not None:
            return resolved, minute, True
        if 1 <= hour <= 12:
            return hour, minute, False
    return None


def _waking(hour: int) -> int:
    """A bare hour on its own: 7-11 morning, 12 noon, 1-6 afternoon or evening."""
    return hour if WAKING_FROM <= hour <= 12 else hour + 12


def _relative(rules: Rules, text: str, now: datetime) -> datetime | None:
    if rules.half_hour.search(text):
        return now + timedelta(minutes=30)
    match = rules.relative.search(text)
    if not match:
        return None
    raw = " ".join((match.group("amount") or "1").split())
    amount = float(raw.replace(",", ".")) if raw[0].isdigit() else rules.amounts.get(raw)
    if amount is None or amount <= 0:
        return None
    hours = match.group("unit").startswith(rules.hour_units)
    if hours and match.groupdict().get("half"):
        amount += 0.5
    return now + timedelta(minutes=amount * (60 if hours else 1))


def _on_day(day: date, clock: time, zone: tzinfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def _days(rules: Rules, text: str, today: date, part: str | None) -> list[date] | None:
    """The days a one-off message can mean, in order (None: it names no day)."""
    if rules.day_after.search(text):
        return [today + timedelta(days=2)]
    if rules.tomorrow.search(text):
        return [today + timedelta(days=1)]
    weekday = rules.weekday.search(text)
    if weekday is not None:
        target = WEEKDAYS.index(rules.weekday_of(weekday.group("day")))
        ahead = (target - today.weekday()) % 7
        following = any(v for k, v in weekday.groupdict().items() if k.startswith("next"))
        if ahead == 0:
            return [today + timedelta(days=7)] if following else [today, today + timedelta(days=7)]
        return [today + timedelta(days=ahead)]
    if rules.today.search(text):
        return [today]
    if rules.tonight.search(text) or part is not None:
        return [today, today + timedelta(days=1)]
    return None


def _one_off(rules: Rules, text: str, now_local: datetime, zone: tzinfo) -> datetime | None:
    """A single moment from day words, a part of the day and a clock time."""
    part = rules.part_of_day(text)
    clock = _clock_in(rules, text, part)
    today = now_local.date()
    days = _days(rules, text, today, part)
    if clock is None and days is None:
        return None
    if clock is None:
        clocks = [_PARTS.get(part or "morning", time(9))]
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


def _parse(rules: Rules, lowered: str, now: datetime, zone: tzinfo) -> When | None:
    text = rules.prepare(lowered)
    now_local = now.astimezone(zone)
    part = rules.part_of_day(text)
    weekly = rules.weekly.search(text)
    if weekly or rules.daily.search(text):
        clock = _clock_in(rules, text, part)
        if clock is None:
            chosen = _PARTS.get(part or "evening", time(19))
        else:
            hour = clock[0] if clock[2] else _waking(clock[0])
            chosen = time(hour % 24, clock[1])
        if weekly:
            return Weekly(rules.weekday_of(weekly.group(1)), chosen)
        return Daily(chosen)
    moment = _relative(rules, text, now_local)
    if moment is None and rules.date.search(text):
        moment = _with_dateparser(lowered, now_local, rules.dateparser)
    if moment is None:
        moment = _one_off(rules, text, now_local, zone)
    if moment is None:
        return None
    at = moment.astimezone(now.tzinfo)
    if not (MIN_AHEAD <= at - now <= MAX_AHEAD):
        return None
    return OneOff(at)


def parse_when(text: str, now: datetime, zone: tzinfo, language: str = "en") -> When | None:
    """The time or rhythm a message asks for, or None when it names none we can trust.

    The person's language's rules first; then the English ones, which people of every
    language type too ("21:30", "in 2 hours") and the quick-choice buttons use.
    """
    lowered = " ".join(text.lower().split())
    rules = RULES.get(language.split("-")[0], _EN)
    found = _parse(rules, lowered, now, zone)
    if rules is _EN or isinstance(found, Daily | Weekly):
        return found
    # "every evening at 8pm" from a Spanish speaker: the rhythm is the English words' part.
    if found is None or _EN.daily.search(lowered) or _EN.weekly.search(lowered):
        return _parse(_EN, lowered, now, zone) or found
    return found
