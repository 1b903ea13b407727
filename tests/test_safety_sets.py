"""Every language's crisis lexicon against its regression sets (tests/safety/<lang>_*.tsv).

One test per language and check, for whatever languages have a lexicon: a new language's sets
are checked by adding its files. The sets were used to tune the lexicons, so these are
regression guarantees; tests/safety/*_fresh_*.tsv and scripts/safety_recall.py measure wording
nobody tuned on.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from nlu.safety import OVERDOSE, SUICIDE, SafetyNet, available_lexicons
from nlu.understanding import INTENTS

SETS = Path(__file__).parent / "safety"
LANGUAGES = available_lexicons()
MIN_SET_SIZE = 200
MAX_FALSE_ALARM_RATE = 0.03


def regression_rows(name: str) -> list[tuple[str, str]]:
    """(intent, message) rows of a regression set; # lines are comments."""
    rows = []
    for line in (SETS / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, message = line.split("\t", 1)
            rows.append((intent, message))
    return rows


@cache
def net(lang: str) -> SafetyNet:
    return SafetyNet.for_language(lang)


def test_every_language_with_a_lexicon_has_both_sets() -> None:
    assert {"en", "es", "ru"} <= set(LANGUAGES)
    for lang in LANGUAGES:
        assert (SETS / f"{lang}_crisis.tsv").is_file(), lang
        assert (SETS / f"{lang}_hard_negative.tsv").is_file(), lang


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_sets_are_big_clean_and_labelled(lang: str) -> None:
    crisis = regression_rows(f"{lang}_crisis.tsv")
    hard_negative = regression_rows(f"{lang}_hard_negative.tsv")
    assert len(crisis) >= MIN_SET_SIZE and len(hard_negative) >= MIN_SET_SIZE
    assert {intent for intent, _ in crisis} == {SUICIDE, OVERDOSE}
    assert all(i in INTENTS and i not in (SUICIDE, OVERDOSE) for i, _ in hard_negative)
    # An ALL-CAPS line repeats another on purpose: it tests that shouting is read alike.
    messages = [m.lower() for _, m in crisis + hard_negative if not m.isupper()]
    assert len(messages) == len(set(messages)), "a message appears twice"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_crisis_message_fires_as_its_own_kind_of_crisis(lang: str) -> None:
    crisis = regression_rows(f"{lang}_crisis.tsv")
    found = [(intent, net(lang).assess(text).intent, text) for intent, text in crisis]
    missed = [(intent, text) for intent, got, text in found if got is None]
    mistyped = [(intent, got, text) for intent, got, text in found if got not in (None, intent)]
    print(f"\n{lang} crisis recall: {len(crisis) - len(missed)}/{len(crisis)}")
    for intent, text in missed:
        print(f"  MISSED {intent}: {text}")
    for expected, got, text in mistyped:
        print(f"  MISTYPED expected {expected}, got {got}: {text}")
    assert not missed
    assert not mistyped


@pytest.mark.parametrize("lang", LANGUAGES)
def test_hard_negatives_rarely_raise_an_alarm(lang: str) -> None:
    hard_negative = regression_rows(f"{lang}_hard_negative.tsv")
    misfires = []
    for _, text in hard_negative:
        verdict = net(lang).assess(text)
        if verdict.is_crisis:
            misfires.append((verdict.intent, verdict.rule, text))
    rate = len(misfires) / len(hard_negative)
    print(f"\n{lang} false alarms: {rate:.1%} ({len(misfires)}/{len(hard_negative)})")
    for intent, rule, text in misfires:
        print(f"  MISFIRE {intent} ({rule}): {text}")
    assert rate <= MAX_FALSE_ALARM_RATE
