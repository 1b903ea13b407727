"""Friendly, stable generated names ("Blue Heron 27") for people and volunteers on the desk."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import yaml

NAMES_FILE = Path(__file__).resolve().parents[2] / "data" / "desk" / "names.yml"
MAX_NUMBER = 99


@lru_cache(maxsize=1)
def word_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(adjectives, animals) from data/desk/names.yml."""
    loaded = yaml.safe_load(NAMES_FILE.read_text(encoding="utf-8"))
    adjectives = tuple(str(word) for word in loaded["adjectives"])
    animals = tuple(str(word) for word in loaded["animals"])
    if not adjectives or not animals:
        raise ValueError(f"{NAMES_FILE} needs adjectives and animals")
    return adjectives, animals


def friendly_name(pseudonym: str, bump: int = 0) -> str:
    """A name derived from a pseudonym: the same pseudonym always gets the same name.

    The pseudonym is already a keyed hash, so the name reveals nothing about who it is; `bump`
    moves to the next name when a volunteer's name would clash with another volunteer's.
    """
    digest = hashlib.sha256(f"kindred-desk-name:{pseudonym}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") + bump
    adjectives, animals = word_lists()
    adjective = adjectives[value % len(adjectives)]
    value //= len(adjectives)
    animal = animals[value % len(animals)]
    value //= len(animals)
    return f"{adjective} {animal} {value % MAX_NUMBER + 1}"
