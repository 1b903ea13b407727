"""The bot's words, loaded from data/copy/<lang>.yml and keyed by message id."""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

COPY_DIR = Path(__file__).resolve().parent.parent / "data" / "copy"
DEFAULT_LANGUAGE = "en"


class MissingCopy(KeyError):
    """A message id that no catalogue has."""


class DuplicateCopy(ValueError):
    """Two copy files define the same message id."""


def catalogue_files(lang: str) -> list[Path]:
    """A language's copy: data/copy/<lang>.yml plus one file per flow in data/copy/<lang>/."""
    main = COPY_DIR / f"{lang}.yml"
    return ([main] if main.is_file() else []) + sorted((COPY_DIR / lang).glob("*.yml"))


@lru_cache(maxsize=16)
def catalogue(lang: str) -> dict[str, str]:
    """All messages of one language ({} when the language has no file)."""
    messages: dict[str, str] = {}
    for path in catalogue_files(lang):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, value in loaded.items():
            if str(key) in messages:
                raise DuplicateCopy(f"{key} is defined twice ({path.name})")
            messages[str(key)] = str(value).strip()
    return messages


def languages() -> list[str]:
    """Languages that have a catalogue."""
    return sorted(
        {p.stem for p in COPY_DIR.glob("*.yml")}
        | {p.name for p in COPY_DIR.iterdir() if p.is_dir()}
    )


def text(lang: str, key: str, **params: Any) -> str:
    """One message in the person's language (English when missing), values HTML-escaped."""
    template = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE).get(key)
    if template is None:
        raise MissingCopy(key)
    safe = {name: html.escape(str(value), quote=False) for name, value in params.items()}
    return template.format(**safe) if safe else template
