"""Lists of people to reach (crisis lines, helplines, services) for a person's country."""

from __future__ import annotations

from collections.abc import Iterable

from flows.copy import text
from flows.directory import Directory, DirectoryEntry
from flows.engine import Button, Person

COUNTRY_PAYLOAD = "country:"


def directory() -> Directory:
    """The referral directory (loaded once)."""
    return Directory.load()


def format_entries(lang: str, entries: Iterable[DirectoryEntry]) -> list[str]:
    """One line per entry: phone first (fastest in a crisis), else the web address."""
    lines = []
    for entry in entries:
        if entry.phone:
            lines.append(text(lang, "resources.line_phone", name=entry.name, phone=entry.phone))
        elif entry.url:
            lines.append(text(lang, "resources.line_url", name=entry.name, url=entry.url))
    return lines


def people_to_reach(person: Person, kinds: Iterable[str] | None = None) -> str:
    """A short block of services for the person's country, with the international fallback."""
    lang = person.language
    chosen = list(kinds) if kinds is not None else None
    entries: list[DirectoryEntry] = []
    if person.country:
        entries = (
            directory().crisis_lines(person.country)
            if chosen is None
            else directory().entries(person.country, chosen)
        )
    if chosen is not None:
        # Online meetings and international services work from anywhere: always worth listing.
        entries += [e for e in directory().entries(None, chosen) if e not in entries]
    lines = [text(lang, "resources.heading"), *format_entries(lang, entries)]
    lines.append(text(lang, "resources.international"))
    return "\n".join(lines)


def country_name(lang: str, name: str) -> str:
    """A directory country's name in the person's language (its own name if none is written)."""
    try:
        return text(lang, f"country.{name}")
    except KeyError:
        return name


def country_buttons(lang: str = "en", per_row: int = 3) -> tuple[tuple[Button, ...], ...]:
    """One button per country the directory covers, named in the person's language; payloads
    carry the directory's name and stay under 64 bytes."""
    buttons = [
        Button(country_name(lang, name), f"{COUNTRY_PAYLOAD}{name}"[:64])
        for name in directory().countries()
    ]
    return tuple(tuple(buttons[i : i + per_row]) for i in range(0, len(buttons), per_row))


def country_from_payload(payload: str | None) -> str | None:
    """The country a country button names, if the directory knows it (payloads are untrusted)."""
    if not payload or not payload.startswith(COUNTRY_PAYLOAD):
        return None
    return directory().resolve_country(payload[len(COUNTRY_PAYLOAD) :])
