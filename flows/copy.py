"""The bot's words: gettext catalogs in data/locale/, read with Babel, keyed by message id.

How the catalogs are laid out, and why:

- ``data/locale/kindred.pot`` is the English copy. In every entry, ``msgctxt`` is the stable
  message id the code asks for (``craving.scheduled``) and ``msgid`` is the English text. So
  translators in Poedit, Weblate or ``pybabel`` see the English they translate (not an opaque
  id), two messages with the same English stay two messages, and ``pybabel update`` marks a
  translation fuzzy when its English changes. The template is edited by hand: the code holds
  no strings to extract, so never run ``pybabel extract``.
- ``data/locale/<lang>/LC_MESSAGES/kindred.po`` holds one language: ``msgstr`` is the
  translation. Adding a language is adding that file (``pybabel init -i data/locale/kindred.pot
  -d data/locale -D kindred -l de``); no code changes.
- Messages that count something are gettext plurals (``msgid_plural``, ``msgstr[0..n]``),
  chosen with the language's ``Plural-Forms`` header: ask for them with ``plural(lang, key, n)``.

A missing, empty, fuzzy or outdated translation (its msgid is not the template's English) falls
back to English. Each catalog is parsed once (Babel's ``read_po``) into plain dicts, so a lookup
is a dict lookup. See docs/translating.md.
"""

from __future__ import annotations

import gettext
import html
import io
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

LOCALE_DIR = Path(__file__).resolve().parent.parent / "data" / "locale"
DOMAIN = "kindred"
DEFAULT_LANGUAGE = "en"  # the template's language: every msgid is English

PluralRule = Callable[[int], int]
Source = str | tuple[str, str]  # a template msgid: the English text, or (one, other)

_MSGCTXT = re.compile(r'^msgctxt "(.+)"$', re.MULTILINE)
_MAX_CACHED = 64


class MissingCopy(KeyError):
    """A message id that no catalogue has (or asked for as the wrong kind: text vs plural)."""


class DuplicateCopy(ValueError):
    """A catalog defines the same message id twice."""


def _english_rule(n: int) -> int:
    return 0 if n == 1 else 1


@dataclass(frozen=True)
class Language:
    """One language's catalog as written: only the messages it translates."""

    code: str
    messages: dict[str, str]
    plurals: dict[str, tuple[str, ...]]
    nplurals: int
    rule: PluralRule


@dataclass(frozen=True)
class _Resolved:
    """Every message in one language, English where the translation is missing."""

    messages: dict[str, str]
    plurals: dict[str, tuple[tuple[str, ...], PluralRule]]


class Catalogs:
    """The catalogs of one locale directory, each parsed on first use and kept."""

    def __init__(self, locale_dir: Path = LOCALE_DIR, domain: str = DOMAIN) -> None:
        self.locale_dir = locale_dir
        self.domain = domain
        self._template: dict[str, Source] | None = None
        self._languages: dict[str, Language] = {}
        self._resolved: dict[str, _Resolved] = {}
        self._lock = threading.RLock()

    # --- files --------------------------------------------------------------------------------

    @property
    def template_file(self) -> Path:
        return self.locale_dir / f"{self.domain}.pot"

    def catalog_file(self, lang: str) -> Path:
        return self.locale_dir / lang / "LC_MESSAGES" / f"{self.domain}.po"

    def files(self, lang: str) -> list[Path]:
        """Where a language's words are: the template for English, else its .po ([] if none)."""
        if lang == DEFAULT_LANGUAGE:
            return [self.template_file]
        path = self.catalog_file(lang)
        return [path] if path.is_file() else []

    def languages(self) -> list[str]:
        """English, and every language with a catalog."""
        found = self.locale_dir.glob(f"*/LC_MESSAGES/{self.domain}.po")
        return sorted({DEFAULT_LANGUAGE} | {p.parent.parent.name for p in found})

    # --- lookups ------------------------------------------------------------------------------

    def text(self, lang: str, key: str, **params: Any) -> str:
        """One message in the language (English when missing), values HTML-escaped."""
        resolved = self._resolved.get(lang) or self._resolve(lang)
        template = resolved.messages.get(key)
        if template is None:
            hint = " is a plural message: use plural()" if key in resolved.plurals else ""
            raise MissingCopy(key + hint)
        return _fill(template, params)

    def plural(self, lang: str, key: str, n: int, **params: Any) -> str:
        """The form of a counting message that fits n, in the language; values HTML-escaped."""
        resolved = self._resolved.get(lang) or self._resolve(lang)
        entry = resolved.plurals.get(key)
        if entry is None:
            hint = " is not a plural message: use text()" if key in resolved.messages else ""
            raise MissingCopy(key + hint)
        forms, rule = entry
        return _fill(forms[min(max(rule(n), 0), len(forms) - 1)], params)

    def language(self, lang: str) -> Language:
        """A language's catalog as written: translated, current messages only."""
        known = self._languages.get(lang)
        if known is not None:
            return known
        with self._lock:
            if lang not in self._languages:
                self._languages[lang] = self._load(lang)
            return self._languages[lang]

    def template(self) -> dict[str, Source]:
        """Every message id and its English (a pair for plurals), in catalog order."""
        if self._template is None:
            with self._lock:
                if self._template is None:
                    self._template = _read_template(self.template_file)
        return self._template

    # --- loading ------------------------------------------------------------------------------

    def _load(self, lang: str) -> Language:
        template = self.template()
        if lang == DEFAULT_LANGUAGE:
            return Language(
                lang,
                {k: v for k, v in template.items() if isinstance(v, str)},
                {k: v for k, v in template.items() if isinstance(v, tuple)},
                2,
                _english_rule,
            )
        path = self.catalog_file(lang)
        if not path.is_file():
            return Language(lang, {}, {}, 2, _english_rule)
        catalog = _read(path)
        nplurals = catalog.num_plurals
        rule: PluralRule = gettext.c2py(catalog.plural_expr)
        messages: dict[str, str] = {}
        plurals: dict[str, tuple[str, ...]] = {}
        for message in catalog:
            key = message.context
            if not message.id or key is None or message.fuzzy:
                continue
            source = template.get(key)
            if source is None or _source(message.id) != source:
                continue  # not in the template, or translated from English that has changed
            string = message.string
            if isinstance(source, str) and isinstance(string, str) and string:
                messages[key] = string
            elif (
                isinstance(source, tuple)
                and isinstance(string, tuple)
                and len(string) == nplurals
                and all(string)
            ):
                plurals[key] = tuple(string)
        return Language(lang, messages, plurals, nplurals, rule)

    def _resolve(self, lang: str) -> _Resolved:
        english = self.language(DEFAULT_LANGUAGE)
        own = self.language(lang)
        plurals = {key: (forms, english.rule) for key, forms in english.plurals.items()}
        plurals.update({key: (forms, own.rule) for key, forms in own.plurals.items()})
        resolved = _Resolved({**english.messages, **own.messages}, plurals)
        if len(self._resolved) < _MAX_CACHED:  # unknown codes share English but are not kept
            self._resolved[lang] = resolved
        return resolved


def _source(msgid: str | tuple[str, ...] | list[str]) -> Source:
    if isinstance(msgid, str):
        return msgid
    return (msgid[0], msgid[1])


def _read(path: Path) -> Catalog:
    """A .po or .pot file, refusing one that defines a message id twice."""
    from babel.messages.pofile import read_po  # Babel is imported when copy is first needed

    raw = path.read_text(encoding="utf-8")
    twice = sorted(key for key, seen in Counter(_MSGCTXT.findall(raw)).items() if seen > 1)
    if twice:
        raise DuplicateCopy(f"{path}: {', '.join(twice)} defined twice")
    return read_po(io.StringIO(raw), ignore_obsolete=True, abort_invalid=True)


def _read_template(path: Path) -> dict[str, Source]:
    template: dict[str, Source] = {}
    for message in _read(path):
        if not message.id:
            continue  # the header
        if not message.context:
            raise MissingCopy(f"{path}: {message.id!r} has no msgctxt (its message id)")
        if message.context in template:
            raise DuplicateCopy(f"{path}: {message.context} defined twice")
        template[message.context] = _source(message.id)
    return template


def _fill(template: str, params: dict[str, Any]) -> str:
    safe = {name: html.escape(str(value), quote=False) for name, value in params.items()}
    return template.format(**safe) if safe else template


# --- the catalogs in data/locale, for the whole process ------------------------------------------

CATALOGS = Catalogs()


def text(lang: str, key: str, **params: Any) -> str:
    """One message in the person's language (English when missing), values HTML-escaped."""
    return CATALOGS.text(lang, key, **params)


def plural(lang: str, key: str, n: int, **params: Any) -> str:
    """A counting message in the form that fits n ("1 minute", "5 минут"); values escaped.

    n only picks the form: pass the number as a parameter too, under the name the message uses
    (plural(lang, "craving.scheduled", 5, minutes=5)).
    """
    return CATALOGS.plural(lang, key, n, **params)


def catalogue(lang: str) -> dict[str, str]:
    """A language's translated messages, plurals aside ({} when it has no catalog)."""
    return CATALOGS.language(lang).messages


def plurals(lang: str) -> dict[str, tuple[str, ...]]:
    """A language's translated plural messages: the forms, in its Plural-Forms order."""
    return CATALOGS.language(lang).plurals


def catalogue_files(lang: str) -> list[Path]:
    """The file a language's words are in (the template, for English)."""
    return CATALOGS.files(lang)


def languages() -> list[str]:
    """Languages that have a catalogue."""
    return CATALOGS.languages()
