"""Every word the bot says: present in every language, well-formed, person-first."""

from __future__ import annotations

import gettext
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from flows.copy import (
    CATALOGS,
    DEFAULT_LANGUAGE,
    LOCALE_DIR,
    catalogue,
    catalogue_files,
    languages,
    plurals,
)

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
TRANSLATIONS = [lang for lang in languages() if lang != DEFAULT_LANGUAGE]


def all_copy() -> Iterator[tuple[str, str, str]]:
    """(language, message id, text) for every message and every plural form."""
    for lang in languages():
        yield from ((lang, key, value) for key, value in catalogue(lang).items())
        for key, forms in plurals(lang).items():
            yield from ((lang, f"{key}[{i}]", form) for i, form in enumerate(forms))


def _placeholders(value: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(value) if field}


def _read(path: Path) -> Catalog:
    with path.open("rb") as po:
        return read_po(po)


# --- the words themselves -------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "key", "value"), list(all_copy()))
def test_no_stigmatising_language(lang: str, key: str, value: str) -> None:
    assert not STIGMATISING.search(value), f"{lang}:{key}: {value!r}"


@pytest.mark.parametrize(("lang", "key", "value"), list(all_copy()))
def test_only_bold_and_italic_markup(lang: str, key: str, value: str) -> None:
    stripped = ALLOWED_TAGS.sub("", value)
    assert "<" not in stripped and ">" not in stripped, f"{lang}:{key}"
    assert "&" not in re.sub(r"&(lt|gt|amp);", "", stripped), f"{lang}:{key}"


@pytest.mark.parametrize(("lang", "key", "value"), list(all_copy()))
def test_placeholders_are_plain_names(lang: str, key: str, value: str) -> None:
    assert value.strip() == value and value, f"{lang}:{key}"
    for _, field, spec, conversion in string.Formatter().parse(value):
        if field is not None:
            assert field.isidentifier() and not spec and not conversion, f"{lang}:{key}"


def test_the_stigma_check_catches_what_it_should() -> None:
    for bad in ("you are an addict", "stay clean", "a dirty urine test", "substance abuse"):
        assert STIGMATISING.search(bad)
    for fine in ("people who use drugs", "substance use disorder", "clean glass of water"):
        assert not STIGMATISING.search(fine)


# --- every language says everything ---------------------------------------------------------


def test_there_is_english_and_at_least_spanish_and_russian() -> None:
    assert {"en", "es", "ru"} <= set(languages())
    assert catalogue_files("en") == [LOCALE_DIR / "kindred.pot"]
    assert catalogue_files("ru") == [LOCALE_DIR / "ru" / "LC_MESSAGES" / "kindred.po"]
    assert catalogue_files("xx") == []


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_every_message_is_translated_with_the_same_placeholders(lang: str) -> None:
    english, translated = catalogue("en"), catalogue(lang)
    missing = sorted(key for key in english if key not in translated)
    missing += sorted(key for key in plurals("en") if key not in plurals(lang))
    assert not missing, f"{lang} lacks (or has fuzzy, or outdated) {missing}"
    dropped = sorted(
        k for k in english if _placeholders(english[k]) != _placeholders(translated[k])
    )
    for key, (one, other) in plurals("en").items():
        wanted = _placeholders(other)
        assert _placeholders(one) == wanted, f"en:{key}: the two English forms differ"
        if any(_placeholders(form) != wanted for form in plurals(lang)[key]):
            dropped.append(key)
    assert not dropped, f"{lang} changes the placeholders of {dropped}"


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_each_catalog_follows_the_template_exactly(lang: str) -> None:
    """Same ids, same English, nothing left over: `pybabel update` has been run."""
    template = {m.context: m.id for m in _read(LOCALE_DIR / "kindred.pot") if m.id}
    catalog = {m.context: m.id for m in _read(catalogue_files(lang)[0]) if m.id}
    assert None not in template and None not in catalog, "an entry without a msgctxt"
    extra = sorted(str(key) for key in catalog if key not in template)
    assert not extra, f"{lang} has ids the template does not: {extra}"
    stale = sorted(str(k) for k, msgid in catalog.items() if template.get(k, msgid) != msgid)
    assert not stale, f"{lang} was translated from older English for {stale}"


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_each_catalog_counts_with_its_languages_plural_rule(lang: str) -> None:
    catalog = _read(catalogue_files(lang)[0])
    rule = get_plural(lang)
    assert catalog.num_plurals == rule.num_plurals == CATALOGS.language(lang).nplurals
    ours, babels = CATALOGS.language(lang).rule, gettext.c2py(rule.plural_expr)
    assert [ours(n) for n in (*range(250), 1_000_000)] == [
        babels(n) for n in (*range(250), 1_000_000)
    ]
    for key, forms in plurals(lang).items():
        assert len(forms) == catalog.num_plurals, f"{lang}:{key}"


def test_messages_with_placeholders_are_flagged_for_translation_tools() -> None:
    """Poedit and msgfmt check {placeholders} when an entry says python-brace-format."""
    for message in _read(LOCALE_DIR / "kindred.pot"):
        if not message.id:
            continue
        texts = message.id if isinstance(message.id, tuple) else (message.id,)
        has = any(_placeholders(t) for t in texts)
        assert has == ("python-brace-format" in message.flags), message.context


def test_no_message_id_is_defined_twice() -> None:
    for lang in languages():
        raw = catalogue_files(lang)[0].read_text(encoding="utf-8")
        ids = re.findall(r'^msgctxt "(.+)"$', raw, re.MULTILINE)
        assert len(ids) == len(set(ids)) == len(CATALOGS.template()), lang


# --- the code asks only for what exists -------------------------------------------------------

_TEXT = re.compile(r'\b(?:text|copy_text)\(\s*[\w.]+,\s*"([a-z_]+\.[a-z0-9_.+-]+)"')
_SAY = re.compile(r'\b(?:_say|desk_text)\(\s*(?:state,\s*)?"([a-z_]+\.[a-z0-9_.+-]+)"')
_PLURAL = re.compile(r'\bplural\(\s*[\w.]+,\s*"([a-z_]+\.[a-z0-9_.+-]+)"')
_DESK_PLURAL = re.compile(r'\bdesk_plural\(\s*"([a-z_]+\.[a-z0-9_.+-]+)"')


def _code() -> str:
    files = [*Path("flows").glob("*.py"), *Path("bot").rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def test_every_message_id_the_code_uses_exists_as_the_kind_it_is_used_as() -> None:
    code = _code()
    said = set(_TEXT.findall(code)) | set(_SAY.findall(code))
    counted = set(_PLURAL.findall(code)) | set(_DESK_PLURAL.findall(code))
    assert said and counted
    assert not sorted(key for key in said if key not in catalogue("en"))
    assert not sorted(key for key in counted if key not in plurals("en"))


def test_the_copy_lives_only_in_the_catalogs() -> None:
    """The YAML copy was converted once (scripts/yaml_copy_to_po.py); new words go in .po files."""
    leftover = sorted(str(p) for p in Path("data/copy").rglob("*.yml"))
    assert not leftover, f"nothing reads {leftover}: put the words in data/locale/ instead"
