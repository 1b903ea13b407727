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


@lru_cache(maxsize=16)
def catalogue(lang: str) -> dict[str, str]:
    """All messages of one language ({} when the language has no file)."""
    path = COPY_DIR / f"{lang}.yml"
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v).strip() for k, v in loaded.items()}


def languages() -> list[str]:
    """Languages that have a catalogue."""
    return sorted(p.stem for p in COPY_DIR.glob("*.yml"))


def text(lang: str, key: str, **params: Any) -> str:
    """One message in the person's language (English when missing), values HTML-escaped."""
    template = catalogue(lang).get(key) or catalogue(DEFAULT_LANGUAGE).get(key)
    if template is None:
        raise MissingCopy(key)
    safe = {name: html.escape(str(value), quote=False) for name, value in params.items()}
    return template.format(**safe) if safe else template
