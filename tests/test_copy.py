"""Every word the bot says: present, well-formed, person-first."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml

from flows.copy import COPY_DIR, catalogue, catalogue_files, languages

# NIDA "Words Matter": terms that stigmatise people who use substances.
STIGMATISING = re.compile(
    r"\b(addicts?|abusers?|junkies?|junkie|druggies?|alcoholics?|crackheads?|"
    r"substance abuse|drug abuse|alcohol abuse|"
    r"(clean|dirty) (urine|test|screen|drug test|sample)|"
    r"(got|get|getting|stay|staying|stayed|be|being|am|are|is|was|were) (clean|dirty)|"
    r"clean (time|and sober)|relapsed? (failure|failed))\b",
    re.IGNORECASE,
)
ALLOWED_TAGS = re.compile(r"</?(b|i)>")


def all_copy() -> list[tuple[str, str, str]]:
    """(language, message id, text) for every message."""
    return [(lang, key, value) for lang in languages() for key, value in catalogue(lang).items()]


def test_every_copy_file_is_a_flat_mapping_of_strings() -> None:
    for lang in languages():
        for path in catalogue_files(lang):
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            assert isinstance(loaded, dict), path
            assert all(isinstance(v, str) and v.strip() for v in loaded.values()), path


@pytest.mark.parametrize(("lang", "key", "value"), all_copy())
def test_no_stigmatising_language(lang: str, key: str, value: str) -> None:
    assert not STIGMATISING.search(value), f"{lang}:{key}: {value!r}"


@pytest.mark.parametrize(("lang", "key", "value"), all_copy())
def test_only_bold_and_italic_markup(lang: str, key: str, value: str) -> None:
    stripped = ALLOWED_TAGS.sub("", value)
    assert "<" not in stripped and ">" not in stripped, f"{lang}:{key}"
    assert "&" not in re.sub(r"&(lt|gt|amp);", "", stripped), f"{lang}:{key}"


@pytest.mark.parametrize(("lang", "key", "value"), all_copy())
def test_placeholders_are_plain_names(lang: str, key: str, value: str) -> None:
    for _, field, spec, conversion in string.Formatter().parse(value):
        if field is not None:
            assert field.isidentifier() and not spec and not conversion, f"{lang}:{key}"


def test_every_message_id_the_code_uses_exists() -> None:
    code = "\n".join(p.read_text() for p in Path("flows").glob("*.py"))
    used = set(re.findall(r'text\(\s*\w+,\s*"([a-z_]+\.[a-z0-9_.]+)"', code))
    missing = sorted(key for key in used if key not in catalogue("en"))
    assert not missing
    assert COPY_DIR.is_dir()


def test_the_stigma_check_catches_what_it_should() -> None:
    for bad in ("you are an addict", "stay clean", "a dirty urine test", "substance abuse"):
        assert STIGMATISING.search(bad)
    for fine in ("people who use drugs", "substance use disorder", "clean glass of water"):
        assert not STIGMATISING.search(fine)


def _placeholders(value: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(value) if field}


@pytest.mark.parametrize("lang", [lang for lang in languages() if lang != "en"])
def test_every_message_is_translated_with_the_same_placeholders(lang: str) -> None:
    english, translated = catalogue("en"), catalogue(lang)
    missing = sorted(key for key in english if key not in translated)
    assert not missing, f"{lang} lacks {missing}"
    dropped = sorted(
        k for k in english if _placeholders(english[k]) != _placeholders(translated[k])
    )
    assert not dropped, f"{lang} changes the placeholders of {dropped}"
    extra = sorted(key for key in translated if key not in english)
    assert not extra, f"{lang} has ids English does not: {extra}"
