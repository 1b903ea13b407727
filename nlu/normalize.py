"""Text normalisation for matching: one cheap pass per message, language data from YAML.

The output is meant for pattern matching, not for display: lowercase, straight quotes, no
zero-width characters, stretched letters squeezed ("pleeeease" -> "please"), punctuation reduced
to sentence breaks (" . " and " ? "), contractions and texting abbreviations expanded ("im" ->
"i am", "cant" -> "cannot", "kms" -> "kill myself", "od'd" -> "overdosed"). The word lists live in
the ``normalize`` section of ``nlu/lexicon/<lang>.yml`` so a new language needs no code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LEXICON_DIR = Path(__file__).resolve().with_name("lexicon")

# Typographic quotes become ASCII so that "don’t" and "don't" expand alike.
_QUOTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u00b4": "'",
    "`": "'",
    "\u02bc": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
}
# Invisible characters people (and keyboards) slip into words, e.g. "su\u200bicide".
_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\ufeff\u00ad\u180e" + "".join(
    chr(c) for c in range(0xFE00, 0xFE10)
)

# A word keeps inner apostrophes ("can't", "od'd"); decimals stay whole ("2.5").
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:'[^\W_]+)*|[.!?;]+")
# Ellipses and dashes glue thoughts together ("i want to... die"), so they are not breaks.
_SOFT_BREAK = re.compile(r"\.{2,}|\u2026|[-\u2013\u2014_/\\]")
_STRETCHED = re.compile(r"[^\W\d_]*([^\W\d_])\1{2,}[^\W\d_]*")
_RUN = re.compile(r"([^\W\d_])\1{2,}")
_TRIPLE = re.compile(r"(\w)\1\1")
# What a star may hide: any letter, Latin or not ("s*icide", "с*ицид", "suic*dio").
_ANY_LETTER = r"[^\W\d_]"
_CENSORED = re.compile(r"[^\W_]*\*+[^\W_*]*(?:\*+[^\W_*]*)*")
# Only tokens that mix letters with digits or @/$ ("k1ll", "d1e", "20xans"), so plain words cost
# nothing.
_LEET = re.compile(
    r"(?<![\w@$])(?:[a-z]+[0-9@$]|[0-9@$]+[a-z]|[@$][0-9@$]*[a-z])[a-z0-9@$]*(?![\w@$])"
)
_LEET_TABLE = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_DIGITS_THEN_WORD = re.compile(r"(\d+)([a-z]{2,})")
_SPACES = re.compile(r"\s+")
_PRONOUN_IS = frozenset(
    {
        "he",
        "she",
        "it",
        "that",
        "there",
        "what",
        "who",
        "where",
        "here",
        "how",
        "everyone",
        "everybody",
        "everything",
        "nobody",
        "someone",
        "somebody",
        "something",
        "noone",
    }
)
_NT_IRREGULAR = {"can't": "cannot", "won't": "will not", "ain't": "is not", "shan't": "shall not"}
_SUFFIXES = {"'m": " am", "'re": " are", "'ve": " have", "'ll": " will", "'d": " would"}


class LexiconNotFoundError(LookupError):
    """No lexicon file for the requested language."""


def lexicon_path(lang: str) -> Path:
    """The lexicon file for a language code, with a clear error when it is missing."""
    if not re.fullmatch(r"[a-z]{2,3}(?:[-_][a-z0-9]{2,8})?", lang or ""):
        raise LexiconNotFoundError(f"invalid language code {lang!r}")
    path = LEXICON_DIR / f"{lang}.yml"
    if not path.is_file():
        available = sorted(p.stem for p in LEXICON_DIR.glob("*.yml"))
        raise LexiconNotFoundError(
            f"no safety lexicon for language {lang!r}: expected {path} (available: {available})"
        )
    return path


@lru_cache(maxsize=16)
def load_lexicon(lang: str) -> dict[str, Any]:
    """Parse nlu/lexicon/<lang>.yml once per process."""
    with lexicon_path(lang).open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"lexicon for {lang!r} is not a mapping")
    return data


def _text(value: object, where: str) -> str:
    """A lexicon string; YAML 1.1 reads bare no/off/yes/on as booleans, so those are refused."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"lexicon: {where} has {value!r}; quote words like 'off' or 'no'")
    return str(value).lower()


def _strings(cfg: Mapping[str, Any], key: str) -> list[str]:
    """A list of words from the normalize section."""
    return [_text(v, f"normalize.{key}") for v in cfg.get(key) or ()]


def _mapping(cfg: Mapping[str, Any], key: str) -> dict[str, str]:
    """A word -> replacement map from the normalize section."""
    where = f"normalize.{key}"
    return {_text(k, where): _text(v, where) for k, v in (cfg.get(key) or {}).items()}


def _shift_groups(template: str, base: int) -> str:
    """Renumber "\\1" in a replacement template to a group inside a combined regex."""
    return re.sub(r"\\(\d+)", lambda g: f"\\g<{base + int(g.group(1))}>", template)


def _alternation(keys: Iterable[str]) -> re.Pattern[str] | None:
    """One word-bounded regex matching any of the keys, longest first."""
    ordered = sorted(set(keys), key=len, reverse=True)
    if not ordered:
        return None
    body = "|".join(re.escape(k) for k in ordered)
    return re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])")


class Normalizer:
    """Normalise text for matching, with one language's abbreviation and misspelling map."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Compile the ``normalize`` section of a lexicon (all keys optional)."""
        cfg = dict(config or {})
        self.words: dict[str, str] = _mapping(cfg, "words")
        self.phrases: dict[str, str] = _mapping(cfg, "phrases")
        self.keep_double: frozenset[str] = frozenset(_strings(cfg, "keep_double"))
        self.censored: tuple[str, ...] = tuple(_strings(cfg, "censored"))
        # Only sensitive words are re-joined from spelled-out letters ("k m s", "d i e").
        self.spelled: frozenset[str] = frozenset(self.censored)
        self.units: frozenset[str] = frozenset(_strings(cfg, "units"))
        # All raw rewrites run as one alternation (one pass over the text, not one per rule).
        # A leading word edge shared by most rules is tested once per position, not per rule.
        raw = [(str(pat), str(rep)) for pat, rep in cfg.get("raw") or ()]
        edged = [f"(?P<r{i}>{p[2:]})" for i, (p, _) in enumerate(raw) if p.startswith(r"\b")]
        loose = [f"(?P<r{i}>{p})" for i, (p, _) in enumerate(raw) if not p.startswith(r"\b")]
        parts = ([rf"\b(?:{'|'.join(edged)})"] if edged else []) + loose
        self._raw_rx: re.Pattern[str] | None = re.compile("|".join(parts)) if parts else None
        # Each rule's "\\1" points at its own group inside the combined regex.
        self._raw_out: tuple[str, ...] = ()
        if self._raw_rx is not None:
            groups = self._raw_rx.groupindex
            self._raw_out = tuple(
                _shift_groups(rep, groups[f"r{i}"]) for i, (_, rep) in enumerate(raw)
            )
        table: dict[int, str | None] = {ord(k): v for k, v in _QUOTES.items()}
        table.update({ord(c): None for c in _INVISIBLE})
        # Emoji and symbols that carry meaning become words; the rest are dropped by tokenising.
        for sym, word in (cfg.get("emoji") or {}).items():
            for ch in str(sym):
                if ord(ch) not in table:
                    table[ord(ch)] = f" {str(word).lower()} "
        self._table = table
        self._phrase_rx = _alternation(self.phrases)

    @classmethod
    def for_language(cls, lang: str = "en") -> Normalizer:
        """The normaliser for a language (cached)."""
        return _normalizer_for(lang)

    def __call__(self, text: str) -> str:
        """Normalise one message; see the module docstring for what changes."""
        t = unicodedata.normalize("NFKC", text).lower().translate(self._table)
        if self._raw_rx is not None:
            t = self._raw_rx.sub(self._raw_sub, t)
        if "*" in t:
            t = _CENSORED.sub(self._uncensor, t)
        t = _LEET.sub(self._unleet, t)
        if _TRIPLE.search(t):  # cheap test first: stretched words are rare
            t = _STRETCHED.sub(self._squeeze, t)
        t = _SOFT_BREAK.sub(" ", t)
        out: list[str] = []
        singles: list[str] = []  # spelled-out letters, "d i e" -> "die"
        for tok in _TOKEN.findall(t):
            if len(tok) == 1 and tok.isalpha():
                singles.append(tok)
                continue
            if singles:
                out.extend(self._join_singles(singles))
                singles = []
            out.append(self._expand(tok))
        if singles:
            out.extend(self._join_singles(singles))
        s = " ".join(out)
        if self._phrase_rx is not None:
            s = self._phrase_rx.sub(lambda m: self.phrases[m.group(0)], s)
        return _SPACES.sub(" ", s).strip()

    def _raw_sub(self, m: re.Match[str]) -> str:
        """Apply the raw rule that matched (its own regex expands group references)."""
        return m.expand(self._raw_out[int(str(m.lastgroup)[1:])])

    def _join_singles(self, letters: list[str]) -> list[str]:
        """Letters spelled one by one (3 or more) are read as a word."""
        # One-letter words may come first ("i k m s", "я думаю о с у и ц и д е"): the spelled
        # word is the longest tail of the run that is a known sensitive word.
        for start in range(len(letters) - 2):
            word = "".join(letters[start:])
            if word in self.spelled:
                head = [self.words.get(ch, ch) for ch in letters[:start]]
                return [*head, self.words.get(word, word)]
        return [self.words.get(ch, ch) for ch in letters]

    def _expand(self, tok: str) -> str:
        """Sentence marks, abbreviations, misspellings and contractions for one token."""
        if not tok[0].isalnum():
            return "?" if "?" in tok else "."
        hit = self.words.get(tok)
        if hit is not None:
            return hit
        if "'" not in tok:
            return tok
        if tok in _NT_IRREGULAR:
            return _NT_IRREGULAR[tok]
        if tok.endswith("n't"):
            return f"{self.words.get(tok[:-3], tok[:-3])} not"
        for suffix, full in _SUFFIXES.items():
            if tok.endswith(suffix):
                return self.words.get(tok[: -len(suffix)], tok[: -len(suffix)]) + full
        if tok.endswith("'s"):
            stem = tok[:-2]
            if stem in _PRONOUN_IS:
                return f"{stem} is"
            if stem == "let":
                return "let us"
            return self.words.get(stem, stem)  # possessive: "friend's" -> "friend"
        joined = tok.replace("'", "")
        return self.words.get(joined, joined)

    def _squeeze(self, m: re.Match[str]) -> str:
        """Letters stretched 3+ times shrink to one, or to two for known double-letter words."""
        word = m.group(0)
        double = _RUN.sub(r"\1\1", word)
        if double in self.keep_double or double in self.words:
            return double
        return _RUN.sub(r"\1", word)

    def _uncensor(self, m: re.Match[str]) -> str:
        """'s*icide', 'k*ll' -> the first sensitive word (lexicon order) the stars can hide."""
        tok = m.group(0)
        if sum(c.isalpha() for c in tok) < 2:
            return tok.replace("*", " ")
        rx = re.compile(re.escape(tok).replace(r"\*", _ANY_LETTER))
        fits = [w for w in self.censored if rx.fullmatch(w)]
        if not fits:
            loose = re.compile(re.escape(tok).replace(r"\*", _ANY_LETTER + "*"))
            fits = [w for w in self.censored if loose.fullmatch(w)]
        return fits[0] if fits else tok.replace("*", "")

    def _unleet(self, m: re.Match[str]) -> str:
        """'k1ll', 'd1e', 'su1c1de' -> letters; '20mg', '3am', '2nd' stay; '20xans' splits."""
        tok = m.group(0)
        if tok in self.words:
            return tok
        lead = _DIGITS_THEN_WORD.fullmatch(tok)
        if lead:
            return tok if lead.group(2) in self.units else f"{lead.group(1)} {lead.group(2)}"
        if not any(c in "013457@$" for c in tok) or sum(c.isalpha() for c in tok) < 2:
            return tok
        return tok.translate(_LEET_TABLE)


@lru_cache(maxsize=16)
def _normalizer_for(lang: str) -> Normalizer:
    """Build and cache the normaliser of one language."""
    return Normalizer(load_lexicon(lang).get("normalize") or {})


def normalize(text: str, lang: str = "en") -> str:
    """The normalised form of a message (cheap: one cached normaliser per language)."""
    return _normalizer_for(lang)(text)


__all__: list[str] = [
    "LEXICON_DIR",
    "LexiconNotFoundError",
    "Normalizer",
    "lexicon_path",
    "load_lexicon",
    "normalize",
]
