"""Referral directory: helplines and services per country, loaded from data/directory/*.yml."""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "directory"
INTERNATIONAL_FILE = "international.yml"

KINDS: tuple[str, ...] = (
    "emergency",
    "crisis",
    "drugs_alcohol",
    "harm_reduction",
    "treatment",
    "meetings",
    "directory",
)
CONFIDENCE_RANK: Mapping[str, int] = {"low": 0, "medium": 1, "high": 2}

REQUIRED_ENTRY_FIELDS: tuple[str, ...] = (
    "id",
    "name",
    "kind",
    "phone",
    "text",
    "url",
    "hours",
    "languages",
    "cost",
    "source_url",
    "last_verified",
    "confidence",
    "description",
)
OPTIONAL_ENTRY_FIELDS: tuple[str, ...] = ("source_says",)
REQUIRED_FILE_FIELDS: tuple[str, ...] = ("country", "code", "aliases", "emergency", "entries")

_URL_RE = re.compile(r"^https?://\S+$")


class DirectoryError(ValueError):
    """A directory file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class DirectoryEntry:
    """One helpline or service, with where its details came from and how sure we are of them."""

    id: str
    name: str
    kind: str
    phone: str | None
    text: str | None
    url: str | None
    hours: str | None
    languages: tuple[str, ...]
    cost: str | None
    source_url: str
    last_verified: dt.date
    confidence: str
    description: str
    source_says: str | None = None
    country: str | None = None

    def meets(self, min_confidence: str) -> bool:
        """Whether this entry's confidence is at least `min_confidence`."""
        return CONFIDENCE_RANK[self.confidence] >= _confidence_rank(min_confidence)


@dataclass(frozen=True)
class CountryRecord:
    """One directory file: a country (or the international list) and its entries."""

    name: str
    code: str | None
    aliases: tuple[str, ...]
    emergency: str | None
    entries: tuple[DirectoryEntry, ...]


def normalize(text: str) -> str:
    """Lower-case, strip accents, dots and extra spaces so that user input can match aliases."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.replace(".", "").replace("'", "").replace("’", "")
    stripped = re.sub(r"[\s_\-]+", " ", stripped).strip()
    if stripped.startswith("the "):
        stripped = stripped[4:]
    return stripped


def _confidence_rank(value: str) -> int:
    """The rank of a confidence level, or ValueError for an unknown one."""
    try:
        return CONFIDENCE_RANK[value]
    except KeyError:
        raise ValueError(
            f"unknown confidence {value!r}; expected one of {sorted(CONFIDENCE_RANK)}"
        ) from None


def _optional_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    """Read a field that must be a string or null."""
    value = data[key]
    if value is None or isinstance(value, str):
        return value
    raise DirectoryError(f"{where}: {key} must be a quoted string or null, got {value!r}")


def _required_str(data: Mapping[str, Any], key: str, where: str) -> str:
    """Read a field that must be a non-empty string."""
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _parse_date(value: Any, where: str) -> dt.date:
    """Read last_verified as a date (YAML gives a date; a YYYY-MM-DD string is accepted too)."""
    if isinstance(value, dt.datetime):
        raise DirectoryError(f"{where}: last_verified must be a date, not a timestamp")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise DirectoryError(f"{where}: last_verified must be YYYY-MM-DD, got {value!r}")


def _parse_entry(data: Any, country: str | None, where: str) -> DirectoryEntry:
    """Validate one entry mapping and build its DirectoryEntry."""
    if not isinstance(data, dict):
        raise DirectoryError(f"{where}: each entry must be a mapping")
    missing = [key for key in REQUIRED_ENTRY_FIELDS if key not in data]
    if missing:
        raise DirectoryError(f"{where}: missing fields {missing}")
    unknown = sorted(set(data) - set(REQUIRED_ENTRY_FIELDS) - set(OPTIONAL_ENTRY_FIELDS))
    if unknown:
        raise DirectoryError(f"{where}: unknown fields {unknown}")
    entry_id = _required_str(data, "id", where)
    where = f"{where} ({entry_id})"
    kind = _required_str(data, "kind", where)
    if kind not in KINDS:
        raise DirectoryError(f"{where}: kind {kind!r} is not one of {list(KINDS)}")
    confidence = _required_str(data, "confidence", where)
    if confidence not in CONFIDENCE_RANK:
        raise DirectoryError(f"{where}: confidence {confidence!r} is not one of high/medium/low")
    source_url = _required_str(data, "source_url", where)
    url = _optional_str(data, "url", where)
    for key, value in (("source_url", source_url), ("url", url)):
        if value is not None and not _URL_RE.match(value):
            raise DirectoryError(f"{where}: {key} must be an http(s) URL, got {value!r}")
    languages = data["languages"]
    if (
        not isinstance(languages, list)
        or not languages
        or not all(isinstance(code, str) and code for code in languages)
    ):
        raise DirectoryError(f"{where}: languages must be a non-empty list of codes")
    phone = _optional_str(data, "phone", where)
    text = _optional_str(data, "text", where)
    if phone is None and text is None and url is None:
        raise DirectoryError(f"{where}: needs at least one of phone, text or url")
    source_says = data.get("source_says")
    if source_says is not None and not isinstance(source_says, str):
        raise DirectoryError(f"{where}: source_says must be a string")
    return DirectoryEntry(
        id=entry_id,
        name=_required_str(data, "name", where),
        kind=kind,
        phone=phone,
        text=text,
        url=url,
        hours=_optional_str(data, "hours", where),
        languages=tuple(languages),
        cost=_optional_str(data, "cost", where),
        source_url=source_url,
        last_verified=_parse_date(data["last_verified"], where),
        confidence=confidence,
        description=_required_str(data, "description", where),
        source_says=source_says,
        country=country,
    )


def parse_file(path: Path) -> CountryRecord:
    """Read and validate one directory YAML file."""
    where = path.name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{where}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DirectoryError(f"{where}: top level must be a mapping")
    missing = [key for key in REQUIRED_FILE_FIELDS if key not in data]
    if missing:
        raise DirectoryError(f"{where}: missing fields {missing}")
    is_international = path.name == INTERNATIONAL_FILE
    name = _required_str(data, "country", where)
    code = _optional_str(data, "code", where)
    emergency = _optional_str(data, "emergency", where)
    if not is_international:
        if code is None or not re.fullmatch(r"[A-Z]{2}", code):
            raise DirectoryError(f"{where}: code must be an ISO 3166-1 alpha-2 code")
        if not emergency:
            raise DirectoryError(f"{where}: a country needs an emergency number")
    aliases = data["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise DirectoryError(f"{where}: aliases must be a list of strings")
    entries_data = data["entries"]
    if not isinstance(entries_data, list):
        raise DirectoryError(f"{where}: entries must be a list")
    country = None if is_international else name
    entries = tuple(
        _parse_entry(item, country, f"{where} entry {index}")
        for index, item in enumerate(entries_data)
    )
    return CountryRecord(
        name=name,
        code=code,
        aliases=tuple(aliases),
        emergency=emergency,
        entries=entries,
    )


class Directory:
    """All countries' referral entries, with look-ups by country name, alias or ISO code."""

    def __init__(
        self, countries: Iterable[CountryRecord], international: CountryRecord | None = None
    ) -> None:
        """Index the given records; raises DirectoryError on duplicate ids or clashing aliases."""
        self._countries: dict[str, CountryRecord] = {}
        self._lookup: dict[str, str] = {}
        self._international = international
        country_list = list(countries)
        seen_ids: set[str] = set()
        for record in country_list + ([international] if international else []):
            for entry in record.entries:
                if entry.id in seen_ids:
                    raise DirectoryError(f"duplicate entry id {entry.id!r}")
                seen_ids.add(entry.id)
        for record in country_list:
            if record.name in self._countries:
                raise DirectoryError(f"duplicate country {record.name!r}")
            self._countries[record.name] = record
            keys = [record.name, *record.aliases]
            if record.code:
                keys.append(record.code)
            for key in keys:
                norm = normalize(key)
                owner = self._lookup.get(norm)
                if owner is not None and owner != record.name:
                    raise DirectoryError(f"alias {key!r} names both {owner!r} and {record.name!r}")
                self._lookup[norm] = record.name

    @classmethod
    def load(cls, path: Path | None = None) -> Directory:
        """Load every *.yml file under `path` (default: the repo's data/directory), cached."""
        return _load_cached((path or DEFAULT_PATH).resolve())

    @classmethod
    def from_path(cls, path: Path) -> Directory:
        """Load every *.yml file under `path` without caching."""
        if not path.is_dir():
            raise DirectoryError(f"directory data folder not found: {path}")
        countries: list[CountryRecord] = []
        international: CountryRecord | None = None
        for file in sorted(path.glob("*.yml")):
            record = parse_file(file)
            if file.name == INTERNATIONAL_FILE:
                international = record
            else:
                countries.append(record)
        return cls(countries, international)

    def countries(self) -> list[str]:
        """Canonical names of every country in the directory, sorted."""
        return sorted(self._countries)

    def resolve_country(self, text: str) -> str | None:
        """The canonical country name for a name, alias or ISO code, or None if unknown."""
        if not text:
            return None
        return self._lookup.get(normalize(text))

    def record(self, country: str | None) -> CountryRecord | None:
        """The whole record for a country (None means the international list)."""
        if country is None:
            return self._international
        name = self.resolve_country(country)
        return self._countries.get(name) if name else None

    def entries(
        self,
        country: str | None,
        kinds: Iterable[str] | None = None,
        *,
        min_confidence: str = "medium",
    ) -> list[DirectoryEntry]:
        """The country's entries of those kinds, in file order ([] for an unknown country)."""
        _confidence_rank(min_confidence)
        wanted: set[str] | None = None
        if kinds is not None:
            wanted = set([kinds] if isinstance(kinds, str) else kinds)
            unknown = sorted(wanted - set(KINDS))
            if unknown:
                raise ValueError(f"unknown kinds {unknown}; expected some of {list(KINDS)}")
        record = self.record(country)
        if record is None:
            return []
        return [
            entry
            for entry in record.entries
            if (wanted is None or entry.kind in wanted) and entry.meets(min_confidence)
        ]

    def emergency_number(self, country: str | None) -> str | None:
        """The main emergency number to show first, or None (international, unknown country)."""
        record = self.record(country)
        return record.emergency if record is not None else None

    def crisis_lines(
        self, country: str | None, *, min_confidence: str = "medium"
    ) -> list[DirectoryEntry]:
        """Crisis lines first, then drug and alcohol helplines as a second choice."""
        return self.entries(country, ["crisis"], min_confidence=min_confidence) + self.entries(
            country, ["drugs_alcohol"], min_confidence=min_confidence
        )

    def international(self, *, min_confidence: str = "medium") -> list[DirectoryEntry]:
        """Resources that work from anywhere (directories of helplines, online meetings)."""
        return self.entries(None, min_confidence=min_confidence)

    def all_entries(self) -> list[DirectoryEntry]:
        """Every entry of every file, international last, whatever its confidence."""
        result = [e for name in self.countries() for e in self._countries[name].entries]
        if self._international is not None:
            result.extend(self._international.entries)
        return result


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path) -> Directory:
    """Load and cache a directory folder (one Directory per resolved path)."""
    return Directory.from_path(path)
