"""Counting in each language ("1 минуту, 2 минуты, 5 минут"), English when a translation is not
ready, and a new language that arrives as nothing but a .po file."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po, write_po
from sqlalchemy.ext.asyncio import AsyncEngine

import flows.copy
from bot.db.engine import sessionmaker
from bot.identity import Identity
from bot.service import KindredService
from flows import peer, progress, reminders, router
from flows.copy import LOCALE_DIR, Catalogs, MissingCopy, plural, text
from flows.engine import Event, EventKind, Person, State
from nlu.pipeline import NluPipeline
from tests.transcript import Conversation

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)


def speaker(lang: str) -> State:
    return State(person=Person(language=lang, country="Spain", onboarded=True))


def milestone(lang: str, **details: int) -> str:
    event = Event(EventKind.FOLLOWUP, payload=reminders.MILESTONE_KIND, now=NOW, details=details)
    return router.step(speaker(lang), event).replies[0].text


def wait_of(lang: str, minutes: int) -> str:
    return peer.queued(speaker(lang), 7, minutes).replies[0].text


def days_line(lang: str, days: int) -> str:
    return progress.summarize(lang, [], TODAY, TODAY - timedelta(days=days))


# --- the right form for the number ------------------------------------------------------------


def test_a_russian_speaker_hears_minutes_and_days_in_the_form_the_number_needs() -> None:
    assert "через 1 минуту" in wait_of("ru", 1)
    assert "через 3 минуты" in wait_of("ru", 3)
    assert "через 5 минут" in wait_of("ru", 5)
    assert "через 11 минут" in wait_of("ru", 11)
    assert "через 21 минуту" in wait_of("ru", 21)
    assert "21 день" in days_line("ru", 21)
    assert "22 дня" in days_line("ru", 22)
    assert "25 дней" in days_line("ru", 25)
    assert "прошёл 21 день" in milestone("ru", days=21)
    assert "прошло 100 дней" in milestone("ru", days=100)
    assert "прошло 2 года" in milestone("ru", days=730, years=2)
    assert "прошло 5 лет" in milestone("ru", days=1826, years=5)


def test_a_spanish_speaker_hears_one_and_many_apart() -> None:
    zone = ZoneInfo("Europe/Madrid")
    assert reminders.describe_moment("es", NOW + timedelta(minutes=1), NOW, zone) == "en 1 minuto"
    assert reminders.describe_moment("es", NOW + timedelta(minutes=5), NOW, zone) == (
        "en 5 minutos"
    )
    assert "1 día desde" in days_line("es", 1)
    assert "30 días desde" in days_line("es", 30)
    assert "2 años desde" in milestone("es", days=730, years=2)


def test_english_no_longer_says_1_minutes() -> None:
    zone = ZoneInfo("Europe/London")
    assert reminders.describe_moment("en", NOW + timedelta(minutes=1), NOW, zone) == "in 1 minute"
    assert "within about 1 minute." in wait_of("en", 1)
    assert "1 day since" in days_line("en", 1)
    assert "Today is the start date" in days_line("en", 0)


def test_counted_values_are_escaped_like_any_other() -> None:
    assert plural("en", "desk.trend.lapses", 2, count="<2>") == "&lt;2&gt; lapses reported"


def test_asking_for_a_message_as_the_wrong_kind_says_so() -> None:
    with pytest.raises(MissingCopy, match="use plural"):
        text("en", "craving.scheduled", minutes=5)
    with pytest.raises(MissingCopy, match="use text"):
        plural("en", "craving.ok", 1)
    with pytest.raises(MissingCopy):
        plural("en", "no.such.message", 1)


# --- a catalog of one's own -------------------------------------------------------------------


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def translate(locale_dir: Path, lang: str, words: dict[str, str | tuple[str, ...]]) -> None:
    """A translator fills in some messages, as in Poedit; the rest stay empty."""
    path = locale_dir / lang / "LC_MESSAGES" / "kindred.po"
    with path.open("rb") as po:
        catalog = read_po(po)
    for message in catalog:
        if message.context in words:
            message.string = words[message.context]
    with path.open("wb") as po:
        write_po(po, catalog)


def new_language(tmp_path: Path, lang: str) -> Path:
    shutil.copy(LOCALE_DIR / "kindred.pot", tmp_path / "kindred.pot")
    template = str(tmp_path / "kindred.pot")
    pybabel("init", "-i", template, "-d", str(tmp_path), "-D", "kindred", "-l", lang)
    return tmp_path


GERMAN: dict[str, str | tuple[str, ...]] = {
    "onboarding.intro": "Hallo, ich bin Kindred 👋 Ein geschützter Ort für alle in Genesung.",
    "onboarding.button_no": "Nein, nicht speichern",
    "craving.ok": "Gut gemacht, dass du diesen Moment überstanden hast.",
    "reminders.when.minutes": ("in {minutes} Minute", "in {minutes} Minuten"),
}


def test_a_fourth_language_is_one_po_file_away(tmp_path: Path) -> None:
    catalogs = Catalogs(new_language(tmp_path, "de"))
    assert catalogs.languages() == ["de", "en"]
    translate(tmp_path, "de", GERMAN)
    catalogs = Catalogs(tmp_path)
    assert catalogs.text("de", "craving.ok").startswith("Gut gemacht")
    assert catalogs.plural("de", "reminders.when.minutes", 1, minutes=1) == "in 1 Minute"
    assert catalogs.plural("de", "reminders.when.minutes", 7, minutes=7) == "in 7 Minuten"
    # What nobody has translated yet is said in English, never left out.
    assert catalogs.text("de", "craving.ask_level") == catalogs.text("en", "craving.ask_level")
    assert catalogs.plural("de", "progress.days", 2, count=2) == (
        "• 2 days since the start date you chose."
    )
    assert set(catalogs.language("de").messages) == {
        "onboarding.intro",
        "onboarding.button_no",
        "craving.ok",
    }


def test_a_fuzzy_empty_or_outdated_translation_is_said_in_english(tmp_path: Path) -> None:
    new_language(tmp_path, "uk")
    translate(
        tmp_path,
        "uk",
        {
            "craving.ok": "Молодець, що пережив цю мить.",
            "craving.followup.passed": "Минуло",
            "reminders.when.minutes": ("за {minutes} хвилину", "", "за {minutes} хвилин"),
        },
    )
    path = tmp_path / "uk" / "LC_MESSAGES" / "kindred.po"
    with path.open("rb") as po:
        catalog = read_po(po)
    for message in catalog:
        if message.context == "craving.ok":
            message.flags.add("fuzzy")  # `pybabel update` does this when the English changes
        if message.context == "craving.followup.passed":
            message.id = "It went away"  # translated from English that is no longer the copy
    with path.open("wb") as po:
        write_po(po, catalog)
    catalogs = Catalogs(tmp_path)
    assert catalogs.language("uk").nplurals == 3
    for key in ("craving.ok", "craving.followup.passed"):
        assert catalogs.text("uk", key) == catalogs.text("en", key)
    assert catalogs.plural("uk", "reminders.when.minutes", 5, minutes=5) == "in 5 minutes"


async def test_a_german_speaker_is_welcomed_in_german_once_de_po_exists(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: AsyncEngine,
    identity: Identity,
    nlu_pipeline: NluPipeline,
) -> None:
    for lang in ("es", "ru"):
        shutil.copytree(LOCALE_DIR / lang, tmp_path / lang)
    new_language(tmp_path, "de")
    translate(tmp_path, "de", GERMAN)
    monkeypatch.setattr(flows.copy, "CATALOGS", Catalogs(tmp_path))
    service = KindredService(sessionmaker(engine), identity, nlu_pipeline)
    chat = Conversation(service, language="de-AT")
    assert "Hallo, ich bin Kindred" in await chat.say("/start")
    assert "Nein, nicht speichern" in chat.labels
