"""Which time zone a person lives in: their own choice, else their country's, else UTC."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml

__all__ = ["Zone", "country_zones", "person_zone", "zone_for"]

TIMEZONES_FILE = Path(__file__).resolve().parent.parent / "data" / "timezones.yml"
FALLBACK_ZONE = "UTC"


@dataclass(frozen=True)
class Zone:
    """One IANA zone and a short label for a button."""

    name: str
    label: str


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[Zone, ...]]:
    """Country code and every name of it (lower case) -> its zones, the default first."""
    raw = yaml.safe_load(TIMEZONES_FILE.read_text(encoding="utf-8")) or {}
    known = available_timezones()
    table: dict[str, tuple[Zone, ...]] = {}
    for code, entry in raw.items():
        zones = tuple(Zone(str(z["zone"]), str(z["label"])) for z in entry["zones"])
        unknown = [z.name for z in zones if z.name not in known]
        if unknown:
            raise ValueError(f"{TIMEZONES_FILE.name}: unknown zones for {code}: {unknown}")
        for key in (str(code), *map(str, entry.get("names") or ())):
            table[key.casefold()] = zones
    return table


def country_zones(country: str | None) -> tuple[Zone, ...]:
    """The zones of a country (by ISO code or name), default first; () when unknown."""
    if not country:
        return ()
    return _table().get(country.strip().casefold(), ())


def _valid(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "America"
        return False
    return True


def zone_for(timezone: str | None, country: str | None) -> str:
    """The IANA zone to schedule in: the person's own, their country's default, or UTC."""
    if _valid(timezone):
        return str(timezone)
    zones = country_zones(country)
    return zones[0].name if zones else FALLBACK_ZONE


def person_zone(timezone: str | None, country: str | None) -> ZoneInfo:
    """zone_for() as a ZoneInfo."""
    return ZoneInfo(zone_for(timezone, country))
