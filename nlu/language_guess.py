"""A cheap guess at which of our languages a message is written in (for the safety net).

People do not always write in the language their phone is set to. The person's own
language's pipeline answers first; the other languages' crisis lexicons then run only on
messages that look like those languages, so an English "suicide squad" is not judged by
Spanish rules, while "ya no quiero vivir" from a phone set to English is still caught.

What each language looks like is data, not code: a guess.yml in the language's project
(nlu/guess.yml for English, nlu/languages/<code>/guess.yml for the others; the keys are
described in nlu/guess.yml). A language with such a file is guessed; one without is not.

The rules, over the message's words (runs of letters, lowercased):
- script: a language with its own script is guessed when its letters are at least half as
  many as the letters of the words written in no such script ("unscripted" words below).
- Only when there are unscripted words:
  - function_words: the language(s) with the most hits among them are guessed, if they have
    at least one hit; a `fallback` language also when nobody has a hit.
  - letters: a language whose distinctive letters appear anywhere in the message is guessed.
  - romanized_words: one such word among them is enough.
- Nothing guessed (no letters at all, say): every language, since a miss costs more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

NLU_DIR = Path(__file__).resolve().parent
GUESS_FILE = "guess.yml"
_KEYS = frozenset({"function_words", "fallback", "letters", "script", "romanized_words"})
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class LanguageProfile:
    """What one language's messages look like (one guess.yml)."""

    code: str
    function_words: frozenset[str] = frozenset()
    fallback: bool = False
    letters: re.Pattern[str] | None = None
    script: re.Pattern[str] | None = None
    romanized_words: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, code: str, raw: Mapping[str, Any], where: str = "") -> LanguageProfile:
        """A profile from a guess.yml's content; unknown keys and bad regexes are errors."""
        where = where or code
        unknown = set(raw) - _KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")

        def words(key: str) -> frozenset[str]:
            value = raw.get(key) or ""
            items = value.split() if isinstance(value, str) else [str(v) for v in value]
            return frozenset(w.lower() for w in items)

        def pattern(key: str) -> re.Pattern[str] | None:
            value = raw.get(key)
            if not value:
                return None
            try:
                return re.compile(str(value))
            except re.error as exc:
                raise ValueError(f"{where}: {key} is not a valid regex: {exc}") from exc

        return cls(
            code=code,
            function_words=words("function_words"),
            fallback=bool(raw.get("fallback", False)),
            letters=pattern("letters"),
            script=pattern("script"),
            romanized_words=words("romanized_words"),
        )


def guess_files(nlu_dir: Path = NLU_DIR) -> dict[str, Path]:
    """Each language's guess file, laid out like the NLU projects (nlu.embedded.project_dir_for)."""
    found: dict[str, Path] = {}
    if (nlu_dir / GUESS_FILE).is_file():
        found["en"] = nlu_dir / GUESS_FILE
    languages = nlu_dir / "languages"
    if languages.is_dir():
        for path in sorted(languages.glob(f"*/{GUESS_FILE}")):
            if path.parent.name != "en":
                found[path.parent.name] = path
    return found


class LanguageGuesser:
    """likely_languages over a set of language profiles."""

    def __init__(self, profiles: Iterable[LanguageProfile]) -> None:
        self.profiles = tuple(profiles)
        self.codes = frozenset(p.code for p in self.profiles)
        scripts = [p.script.pattern for p in self.profiles if p.script is not None]
        # Words with a letter of any listed script are not "unscripted" (Latin, in practice).
        self._any_script = re.compile("|".join(f"(?:{s})" for s in scripts)) if scripts else None
        self._scripted = [(p.code, p.script) for p in self.profiles if p.script is not None]
        self._counted = [p for p in self.profiles if p.function_words or p.fallback]
        self._lettered = [(p.code, p.letters) for p in self.profiles if p.letters is not None]
        self._romanized = [(p.code, p.romanized_words) for p in self.profiles if p.romanized_words]

    @classmethod
    def from_dir(cls, nlu_dir: Path) -> LanguageGuesser:
        """The profiles of every language with a guess file under nlu_dir."""
        import yaml

        profiles = []
        for code, path in guess_files(nlu_dir).items():
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: expected a mapping")
            profiles.append(LanguageProfile.from_mapping(code, raw, str(path)))
        return cls(profiles)

    def likely(self, text: str) -> frozenset[str]:
        """The languages this text plausibly is; several (or all) when unsure."""
        words = [w.lower() for w in _WORD.findall(text)]
        any_script = self._any_script
        plain = words if any_script is None else [w for w in words if not any_script.search(w)]
        found: set[str] = set()
        if self._scripted:
            plain_letters = sum(len(w) for w in plain)
            for code, script in self._scripted:
                count = len(script.findall(text))
                if count and count >= plain_letters / 2:
                    found.add(code)
        if plain:
            hits = {p.code: sum(w in p.function_words for w in plain) for p in self._counted}
            best = max(hits.values(), default=0)
            for p in self._counted:
                # A tie ("me corto": "me" is both) runs both languages' rules: a miss costs more.
                if hits[p.code] >= best and (best >= 1 or p.fallback):
                    found.add(p.code)
            if self._lettered:
                lowered = text.lower()
                for code, letters in self._lettered:
                    if letters.search(lowered):
                        found.add(code)
            for code, romanized in self._romanized:
                if any(w in romanized for w in plain):
                    found.add(code)
        return frozenset(found or self.codes)


@lru_cache(maxsize=4)
def guesser(nlu_dir: Path = NLU_DIR) -> LanguageGuesser:
    """The guesser for the shipped languages, read once."""
    return LanguageGuesser.from_dir(nlu_dir)


def likely_languages(text: str) -> frozenset[str]:
    """The languages with a guess file (en, es, ru) this text plausibly is; several when unsure."""
    return guesser().likely(text)
