"""Turning replies into what a channel can show."""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"</?(?:b|i)>")


def plain_text(markup: str) -> str:
    """Reply text without our HTML tags, for the console."""
    return html.unescape(_TAG.sub("", markup))


def split_for_telegram(markup: str, limit: int = 4096) -> list[str]:
    """Split a long reply on paragraph boundaries so each part fits Telegram's limit."""
    if len(markup) <= limit:
        return [markup]
    parts: list[str] = []
    current = ""
    for paragraph in markup.split("\n\n"):
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while len(paragraph) > limit:
            parts.append(paragraph[:limit])
            paragraph = paragraph[limit:]
        current = paragraph
    if current:
        parts.append(current)
    return parts
