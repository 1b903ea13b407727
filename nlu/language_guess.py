"""A cheap guess at which of our languages a message is written in (for the safety net).

People do not always write in the language their phone is set to. The person's own
language's pipeline answers first; the other languages' crisis lexicons then run only on
messages that look like those languages, so an English "suicide squad" is not judged by
Spanish rules, while "ya no quiero vivir" from a phone set to English is still caught.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_SPANISH_LETTERS = re.compile(r"[ñ¿¡áéíóú]")
# Frequent function words that the other language rarely uses.
SPANISH = frozenset(
    [
        "que",
        "de",
        "la",
        "el",
        "los",
        "las",
        "y",
        "en",
        "por",
        "para",
        "con",
        "una",
        "un",
        "es",
        "estoy",
        "quiero",
        "no",
        "ya",
        "me",
        "mi",
        "mis",
        "se",
        "lo",
        "le",
        "muy",
        "pero",
        "porque",
        "como",
        "cuando",
        "todo",
        "nada",
        "tengo",
        "estar",
        "ser",
        "soy",
        "eres",
        "está",
        "hoy",
        "ayer",
        "mañana",
        "más",
        "mas",
        "ganas",
        "vivir",
        "morir",
        "nadie",
        "alguien",
        "ayuda",
        "amigo",
        "amiga",
    ]
)
ENGLISH = frozenset(
    [
        "the",
        "and",
        "to",
        "of",
        "i",
        "im",
        "i'm",
        "my",
        "is",
        "are",
        "was",
        "it",
        "this",
        "that",
        "with",
        "for",
        "you",
        "me",
        "not",
        "just",
        "want",
        "feel",
        "can't",
        "cant",
        "don't",
        "dont",
        "have",
        "had",
        "so",
        "like",
        "what",
        "how",
        "why",
        "when",
        "help",
        "anymore",
    ]
)


def likely_languages(text: str) -> frozenset[str]:
    """The languages (en, es, ru) this text plausibly is; several when unsure."""
    cyrillic = len(_CYRILLIC.findall(text))
    words = [w.lower() for w in _WORD.findall(text)]
    latin_words = [w for w in words if not _CYRILLIC.search(w)]
    found: set[str] = set()
    if cyrillic and cyrillic >= sum(len(w) for w in latin_words) / 2:
        found.add("ru")
    spanish = sum(w in SPANISH for w in latin_words)
    english = sum(w in ENGLISH for w in latin_words)
    if latin_words:
        if spanish > english or _SPANISH_LETTERS.search(text.lower()):
            found.add("es")
        if english >= spanish:
            found.add("en")
    return frozenset(found or {"en", "es", "ru"})
