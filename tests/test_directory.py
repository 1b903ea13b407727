"""Referral directory: the data files' schema and wording, and the Directory loader's API."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.directory import (
    DEFAULT_PATH,
    KINDS,
    REQUIRED_ENTRY_FIELDS,
    Directory,
    DirectoryEntry,
    DirectoryError,
    normalize,
)

DATA_FILES = sorted(DEFAULT_PATH.glob("*.yml"))
COUNTRY_SLUGS = ["us", "gb", "ca", "au", "ie", "nz", "de", "fr", "es", "mx", "ar", "ru"]
CANONICAL = {
    "us": "United States",
    "gb": "United Kingdom",
    "ca": "Canada",
    "au": "Australia",
    "ie": "Ireland",
    "nz": "New Zealand",
    "de": "Germany",
    "fr": "France",
    "es": "Spain",
    "mx": "Mexico",
    "ar": "Argentina",
    "ru": "Russia",
}
STIGMA_PATTERNS = [
    r"\baddicts?\b",
    r"\babusers?\b",
    r"\bjunkies?\b",
    r"\bsubstance abuse\b",
    r"\bdrug abuse\b",
    r"\bclean\b",
    r"\bdirty\b",
]


def _load_raw(path: Path) -> dict[str, Any]:
    """Parse one data file with plain PyYAML, independently of the loader."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path.name
    return data


def _raw_entries() -> list[tuple[str, dict[str, Any]]]:
    """Every entry of every data file, with the file it came from."""
    return [(path.name, entry) for path in DATA_FILES for entry in _load_raw(path)["entries"]]


def _entry_params() -> list[Any]:
    """The raw entries as pytest parameters, each named by its id."""
    return [pytest.param(name, entry, id=str(entry.get("id"))) for name, entry in _raw_entries()]


@pytest.fixture(scope="module")
def directory() -> Directory:
    """The repository's directory, loaded through the cached loader."""
    return Directory.load()


def test_every_listed_country_has_a_file() -> None:
    names = {path.stem for path in DATA_FILES}
    assert names == {*COUNTRY_SLUGS, "international"}


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_file_schema(path: Path) -> None:
    data = _load_raw(path)
    assert set(data) == {"country", "code", "aliases", "emergency", "entries"}
    assert isinstance(data["aliases"], list) and data["aliases"]
    assert all(isinstance(a, str) and a == a.lower() for a in data["aliases"]), "aliases lowercase"
    assert isinstance(data["entries"], list) and data["entries"]
    if path.stem != "international":
        assert data["country"] == CANONICAL[path.stem]
        assert data["code"] == path.stem.upper()


@pytest.mark.parametrize(("filename", "entry"), _entry_params())
def test_entry_schema(filename: str, entry: dict[str, Any]) -> None:
    missing = [field for field in REQUIRED_ENTRY_FIELDS if field not in entry]
    assert not missing, f"{filename}: {entry.get('id')} lacks {missing}"
    assert set(entry) <= {*REQUIRED_ENTRY_FIELDS, "source_says"}
    assert entry["kind"] in KINDS
    assert entry["confidence"] in {"high", "medium"}, "low-confidence entries stay out"
    verified = entry["last_verified"]
    assert isinstance(verified, dt.date) and not isinstance(verified, dt.datetime)
    assert verified <= dt.date.today()
    for field in ("phone", "text", "url", "hours", "cost"):
        assert entry[field] is None or isinstance(entry[field], str), f"{field} must be quoted"
    assert entry["phone"] or entry["text"] or entry["url"], "needs a way to reach it"
    if entry["phone"] or entry["text"]:
        assert re.match(r"^https?://\S+$", entry["source_url"]), "numbers need a source"
        assert re.search(r"\d", entry["phone"] or entry["text"])
    assert re.match(r"^https?://\S+$", entry["source_url"])
    if entry["url"] is not None:
        assert re.match(r"^https?://\S+$", entry["url"])
    assert isinstance(entry["languages"], list) and entry["languages"]
    assert all(re.fullmatch(r"[a-z]{2}", code) for code in entry["languages"])
    assert entry["id"].startswith(f"{Path(filename).stem[:3]}-")
    assert entry["description"].endswith(".")
    assert len(entry["description"]) <= 160, "one short sentence"


def test_ids_unique() -> None:
    ids = [entry["id"] for _, entry in _raw_entries()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("filename", "entry"), _entry_params())
def test_no_stigmatising_words(filename: str, entry: dict[str, Any]) -> None:
    for field in ("description", "name"):
        text = entry[field].lower()
        for pattern in STIGMA_PATTERNS:
            assert not re.search(pattern, text), f"{filename} {entry['id']} {field}: {pattern}"


@pytest.mark.parametrize("slug", COUNTRY_SLUGS)
def test_every_country_has_an_emergency_number(slug: str, directory: Directory) -> None:
    number = directory.emergency_number(CANONICAL[slug])
    assert number and re.fullmatch(r"\d{2,3}", number)
    emergency_phones = {e.phone for e in directory.entries(slug, ["emergency"])}
    assert number in emergency_phones, "the headline number is itself a sourced entry"


def test_countries_sorted_and_complete(directory: Directory) -> None:
    assert directory.countries() == sorted(CANONICAL.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("United States", "United States"),
        ("USA", "United States"),
        ("u.s.a.", "United States"),
        ("America", "United States"),
        ("us", "United States"),
        ("the UK", "United Kingdom"),
        ("England", "United Kingdom"),
        ("Scotland", "United Kingdom"),
        ("wales", "United Kingdom"),
        ("Britain", "United Kingdom"),
        ("GB", "United Kingdom"),
        ("españa", "Spain"),
        ("ESPANA", "Spain"),
        ("México", "Mexico"),
        ("mexico", "Mexico"),
        ("Россия", "Russia"),
        ("россия", "Russia"),
        ("Deutschland", "Germany"),
        ("de", "Germany"),
        ("  france ", "France"),
        ("Éire", "Ireland"),
        ("Aotearoa", "New Zealand"),
        ("nz", "New Zealand"),
        ("AU", "Australia"),
        ("ar", "Argentina"),
        ("ca", "Canada"),
    ],
)
def test_resolve_country(text: str, expected: str, directory: Directory) -> None:
    assert directory.resolve_country(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "atlantis", "xx", "international"])
def test_resolve_country_unknown(text: str, directory: Directory) -> None:
    assert directory.resolve_country(text) is None


def test_normalize_strips_case_accents_and_dots() -> None:
    assert normalize("  Méjico ") == normalize("mejico") == "mejico"
    assert normalize("U.S.A.") == "usa"
    assert normalize("The United Kingdom") == "united kingdom"


def test_entries_filter_by_kind_and_confidence(directory: Directory) -> None:
    crisis = directory.entries("uk", ["crisis"])
    assert [e.id for e in crisis] == ["gb-samaritans"]
    assert all(isinstance(e, DirectoryEntry) and e.country == "United Kingdom" for e in crisis)
    everything = directory.entries("Germany")
    high_only = directory.entries("Germany", min_confidence="high")
    assert {e.confidence for e in high_only} == {"high"}
    assert len(high_only) < len(everything)
    assert directory.entries("atlantis") == []


def test_entries_accepts_a_single_kind_string(directory: Directory) -> None:
    assert directory.entries("us", "crisis") == directory.entries("us", ["crisis"])


def test_entries_rejects_unknown_kind_and_confidence(directory: Directory) -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        directory.entries("us", ["hotline"])
    with pytest.raises(ValueError, match="unknown confidence"):
        directory.entries("us", min_confidence="certain")


def test_crisis_lines_put_crisis_before_drugs_alcohol(directory: Directory) -> None:
    lines = directory.crisis_lines("United States")
    kinds = [e.kind for e in lines]
    assert kinds[0] == "crisis"
    assert kinds == sorted(kinds, key=["crisis", "drugs_alcohol"].index)
    assert "drugs_alcohol" in kinds


def test_international(directory: Directory) -> None:
    international = directory.international()
    assert international == directory.entries(None)
    assert international
    assert all(e.country is None and e.url for e in international)
    assert directory.emergency_number(None) is None


def test_load_is_cached() -> None:
    assert Directory.load() is Directory.load()
    assert Directory.load(DEFAULT_PATH) is Directory.load()


def _write(folder: Path, name: str, text: str) -> None:
    """Write one directory file into a temporary folder."""
    (folder / name).write_text(text, encoding="utf-8")


GOOD_ENTRY = """
  - id: zz-line
    name: Test line
    kind: crisis
    phone: "123"
    text: null
    url: null
    hours: null
    languages: [en]
    cost: null
    source_url: https://example.org/source
    last_verified: 2026-01-01
    confidence: high
    description: A test line.
"""


def _country_file(entries: str, code: str = "ZZ", emergency: str = '"999"') -> str:
    """A minimal country file around the given entries block."""
    return (
        f"country: Testland\ncode: {code}\naliases: [testland, tl]\n"
        f"emergency: {emergency}\nentries:{entries}"
    )


def test_loader_reads_a_custom_folder(tmp_path: Path) -> None:
    _write(tmp_path, "zz.yml", _country_file(GOOD_ENTRY))
    loaded = Directory.load(tmp_path)
    assert loaded.countries() == ["Testland"]
    assert loaded.resolve_country("TL") == "Testland"
    assert loaded.entries("zz")[0].last_verified == dt.date(2026, 1, 1)
    assert loaded.international() == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (GOOD_ENTRY.replace("kind: crisis", "kind: hotline"), "kind"),
        (GOOD_ENTRY.replace("confidence: high", "confidence: sure"), "confidence"),
        (GOOD_ENTRY.replace('phone: "123"', "phone: 123"), "quoted string"),
        (GOOD_ENTRY.replace("2026-01-01", "01/01/2026"), "last_verified"),
        (GOOD_ENTRY.replace("https://example.org/source", "example.org"), "http"),
        (GOOD_ENTRY.replace("    cost: null\n", ""), "missing"),
        (GOOD_ENTRY + GOOD_ENTRY, "duplicate entry id"),
        (GOOD_ENTRY.replace('phone: "123"', "phone: null"), "at least one"),
    ],
)
def test_loader_rejects_bad_entries(tmp_path: Path, entries: str, message: str) -> None:
    _write(tmp_path, "zz.yml", _country_file(entries))
    with pytest.raises(DirectoryError, match=message):
        Directory.from_path(tmp_path)


def test_loader_rejects_country_without_emergency_number(tmp_path: Path) -> None:
    _write(tmp_path, "zz.yml", _country_file(GOOD_ENTRY, emergency="null"))
    with pytest.raises(DirectoryError, match="emergency"):
        Directory.from_path(tmp_path)


def test_loader_rejects_clashing_aliases(tmp_path: Path) -> None:
    _write(tmp_path, "zz.yml", _country_file(GOOD_ENTRY))
    other = _country_file(GOOD_ENTRY.replace("zz-line", "zy-line"), code="ZY")
    _write(tmp_path, "zy.yml", other.replace("country: Testland", "country: Otherland"))
    with pytest.raises(DirectoryError, match="alias"):
        Directory.from_path(tmp_path)


def test_loader_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="not found"):
        Directory.from_path(tmp_path / "nope")
