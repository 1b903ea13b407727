"""The language guess reads what each language looks like from files (issue #8).

nlu/guess.yml and nlu/languages/<code>/guess.yml replaced word lists and rules written into
nlu/language_guess.py. The guess must not have changed for English, Spanish and Russian: the
code as it was is kept below as the oracle and compared on every message we have. A fourth
language is then picked up from a guess file alone.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from nlu.language_guess import (
    GUESS_FILE,
    LanguageGuesser,
    LanguageProfile,
    guess_files,
    guesser,
    likely_languages,
)
from nlu.training_data import data_files, load_project

ROOT = Path(__file__).resolve().parents[1]
NLU = ROOT / "nlu"
PROJECTS = {"en": NLU, "es": NLU / "languages" / "es", "ru": NLU / "languages" / "ru"}

# ---------------------------------------------------------------------------------------------
# The oracle: nlu/language_guess.py before the word lists moved to guess.yml files. Frozen.

_OLD_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_OLD_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_OLD_SPANISH_LETTERS = re.compile(r"[ñ¿¡áéíóú]")


def _old_words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_OLD_SPANISH = _old_words(
    """
    que de la el los las y en por para con una un es estoy quiero no ya me mi mis se lo le muy
    pero porque como cuando todo nada tengo estar ser soy eres está hoy ayer mañana más mas
    ganas vivir morir nadie alguien ayuda amigo amiga voy vas va esta este esto eso siento puedo
    nunca otra vez sin del al ni yo te hay si noche ojala ojalá hubiera matar matarme morirme
    suicidar suicidarme corto cortarme colgar pastillas xq q sigo vivo viva sentido tiene seguir
    sobredosis apenas respira chau todos fue necesito urgente vomita sangre naloxona mejor
    muerta muerto asi así
    """
)
_OLD_RUSSIAN_LATIN = _old_words(
    """
    hochu xochu khochu umeret umiret zhit jit zhizn sebya sebia sebe pokonchit ubyu ubiu peredoz
    tabletki tabletok mne menya bolshe pomogite pomogi segodnya uzhe nichego vsyo ustal ustala
    nadoelo
    """
)
_OLD_ENGLISH = _old_words(
    """
    the and to of i im i'm my is are was it this that with for you me not just want feel can't
    cant don't dont have had so like what how why when help anymore
    """
)


def old_likely_languages(text: str) -> frozenset[str]:
    """The languages (en, es, ru) this text plausibly is; several when unsure."""
    cyrillic = len(_OLD_CYRILLIC.findall(text))
    words = [w.lower() for w in _OLD_WORD.findall(text)]
    latin_words = [w for w in words if not _OLD_CYRILLIC.search(w)]
    found: set[str] = set()
    if cyrillic and cyrillic >= sum(len(w) for w in latin_words) / 2:
        found.add("ru")
    spanish = sum(w in _OLD_SPANISH for w in latin_words)
    english = sum(w in _OLD_ENGLISH for w in latin_words)
    if latin_words:
        if spanish >= max(english, 1) or _OLD_SPANISH_LETTERS.search(text.lower()):
            found.add("es")
        if english >= spanish:
            found.add("en")
        if any(w in _OLD_RUSSIAN_LATIN for w in latin_words):
            found.add("ru")
    return frozenset(found or {"en", "es", "ru"})


# ---------------------------------------------------------------------------------------------
# Same guess as before, on every message we have


def _tsv_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    # The whole line, and the message column alone (the intent column is English).
    return lines + [line.split("\t", 1)[1] for line in lines if "\t" in line]


def _training_texts(lang: str) -> list[str]:
    data = load_project(PROJECTS[lang])
    texts = [ex.text for ex in data.examples]
    texts += [item for items in data.lookups.values() for item in items]
    texts += list(data.synonyms)
    # The raw YAML too: annotations, comments, entity markup.
    for path in data_files(PROJECTS[lang] / "data"):
        texts += path.read_text(encoding="utf-8").splitlines()
    return texts


EDGE_CASES = [
    "",
    " ",
    "\n\t",
    "12345",
    "3.14 + 2 = 5,14",
    "???",
    "😂😂😂",
    "🙏",
    "💊💊 🔪",
    "ok",
    "x",
    "me",
    "me corto",
    "ya",
    "mañana",
    "¿?",
    "ÑANDÚ",
    "NO PUEDO MÁS",
    "I CAN'T DO THIS ANYMORE",
    "i can’t do this anymore",
    "я больше не хочу жить",
    "мне очень плохо 😢",
    "i want to die я хочу умереть",
    "me quiero morir i want to die",
    "ya no quiero vivir, i just want it to stop, хватит",
    "hochu umeret",
    "ne hochu zhit bolshe",
    "mnе плохо",  # a Latin word with a Cyrillic "е" in it
    "suicide squad",
    "the killing floor de la muerte",
    "cafe café",
    "über straße mädchen",
    "a" * 5000,
    "a1b2c3 d4e5",
    "ya_no_quiero",
    "ÀÉÎÕÜ",
    "Ελληνικά λόγια",
    "中文 text here",
    "مرحبا hello",
    "ya no" * 500,
    "мне" + " the" * 7,
    "мне" + " the" * 6,
]


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = [("edge cases", EDGE_CASES)]
    for path in sorted((ROOT / "tests" / "safety").glob("*.tsv")):
        cases.append((f"tests/safety/{path.name}", _tsv_lines(path)))
    for lang in PROJECTS:
        cases.append((f"{lang} training data", _training_texts(lang)))
    for path in sorted((NLU / "lexicon").glob("*.yml")):
        cases.append((f"nlu/lexicon/{path.name}", path.read_text(encoding="utf-8").splitlines()))
    return cases


@pytest.mark.parametrize(
    ("source", "texts"), _cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_same_guess_as_the_code_it_replaced(source: str, texts: list[str]) -> None:
    assert texts, source
    changed = [
        (text, sorted(old_likely_languages(text)), sorted(likely_languages(text)))
        for text in texts
        if likely_languages(text) != old_likely_languages(text)
    ]
    assert not changed, f"{source}: {len(changed)} of {len(texts)} changed, e.g. {changed[:5]}"


def test_the_corpus_is_big_and_varied() -> None:
    texts = [t for _source, ts in _cases() for t in ts]
    assert len(texts) > 5000
    guesses = {old_likely_languages(t) for t in texts}
    # Every rule of the oracle fires somewhere: each language alone, ties, and "all".
    for expected in [{"en"}, {"es"}, {"ru"}, {"en", "es"}, {"en", "ru"}, {"en", "es", "ru"}]:
        assert frozenset(expected) in guesses


def test_the_shipped_files() -> None:
    assert set(guess_files()) == {"en", "es", "ru"}
    assert guess_files()["en"] == NLU / GUESS_FILE
    assert guess_files()["es"] == NLU / "languages" / "es" / GUESS_FILE
    assert guesser() is guesser()  # read once


def test_every_language_with_a_crisis_lexicon_can_be_guessed() -> None:
    """A language whose crisis wording can never be guessed is missed from other phones."""
    lexicons = {p.stem for p in (NLU / "lexicon").glob("*.yml")}
    assert lexicons <= guesser().codes


# ---------------------------------------------------------------------------------------------
# A fourth language is files, not code

GERMAN = """
# German: frequent words the other languages rarely use.
function_words: >-
  ich und nicht der das ist mehr will mich mir kein keine nur auch sein bin hab habe
  leben sterben heute niemand hilfe bitte
letters: "[äöüß]"
"""


@pytest.fixture
def with_german(tmp_path: Path) -> Path:
    """A copy of the shipped guess files plus languages/de/guess.yml."""
    for path in guess_files().values():
        target = tmp_path / path.relative_to(NLU)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (tmp_path / "languages" / "de").mkdir()
    (tmp_path / "languages" / "de" / GUESS_FILE).write_text(GERMAN, encoding="utf-8")
    return tmp_path


def test_a_fourth_language_from_files_alone(with_german: Path) -> None:
    four = guesser(with_german)
    assert four.codes == {"en", "es", "ru", "de"}
    assert four.likely("ich will nicht mehr leben") == {"de"}
    assert four.likely("Ich bin so müde, ich kann nicht mehr") == {"de"}
    assert "de" in four.likely("schöne grüße")  # its letters alone
    for text in [
        "i can't do this anymore",
        "i want to die",
        "suicide squad",
        "ya no quiero vivir",
        "no puedo más con esto",
        "me corto",
        "я больше не хочу жить",
        "hochu umeret",
    ]:
        assert four.likely(text) == likely_languages(text) == old_likely_languages(text), text
    # Nothing to go on: every language, the new one included.
    assert four.likely("😂") == {"en", "es", "ru", "de"}
    # The shipped guesser does not see the temporary language.
    assert "de" not in likely_languages("ich will nicht mehr leben")


def test_a_profile_without_function_words_still_gets_its_script() -> None:
    greek = LanguageProfile.from_mapping("el", {"script": "[\u0370-\u03ff]"})
    english = LanguageProfile.from_mapping("en", {"fallback": True, "function_words": "the i"})
    both = LanguageGuesser([english, greek])
    assert both.likely("δεν αντέχω άλλο") == {"el"}
    assert both.likely("i can't") == {"en"}
    assert both.likely("") == {"en", "el"}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"function_word": "a b"}, "unknown keys"),
        ({"letters": "[äö"}, "not a valid regex"),
        ({"script": "(\u0400"}, "not a valid regex"),
    ],
)
def test_bad_guess_files_are_errors(raw: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        LanguageProfile.from_mapping("xx", raw)


def test_a_guess_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    (tmp_path / GUESS_FILE).write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a mapping"):
        LanguageGuesser.from_dir(tmp_path)
