"""/language: the person picks the language Kindred writes in.

Telegram's language picks it on first contact; this flow changes it. The choices are the copy
catalogues there are, each labelled in its own language ("English", "Español", "Русский"), so
a new catalogue is offered without code. A press, or `/language es`, sets it (SetLanguage) and
confirms in the new language; every later reply, and the reading of the person's messages,
follows it. Crisis help never depends on it: the safety net reads every language it knows.
"""

from __future__ import annotations

import unicodedata

from flows.copy import languages, text
from flows.engine import Button, Event, EventKind, Outcome, Reply, SetLanguage, State

NAME = "language"
PREFIX = "lang:"


def _folded(word: str) -> str:
    """Casefolded without accents, so "espanol" and "ESPAÑOL" name the same language."""
    decomposed = unicodedata.normalize("NFD", word.strip().casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def own_name(code: str) -> str:
    """A language's name in itself ("Español"), from its own catalogue."""
    return text(code, "language.name")


def chosen_language(words: str) -> str | None:
    """The catalogue language that `/language <words>` names: a code ("es", "es-MX") or its
    own name ("español", "Русский")."""
    wanted = _folded(words)
    if not wanted:
        return None
    for code in languages():
        if wanted in (code, _folded(own_name(code))) or wanted.split("-")[0].split("_")[0] == code:
            return code
    return None


def _buttons() -> tuple[tuple[Button, ...], ...]:
    return tuple((Button(own_name(code), f"{PREFIX}{code}"),) for code in languages())


def start(state: State, event: Event) -> Outcome:
    """`/language`: the choices; `/language es`: that language at once."""
    lang = state.person.language
    words = event.args.strip()
    if words:
        code = chosen_language(words)
        if code is not None:
            return choose(state, code)
        reply = Reply(text(lang, "language.unknown"), _buttons())
    else:
        reply = Reply(text(lang, "language.ask"), _buttons())
    return Outcome((reply,), state.at(NAME, "choose"))


def choose(state: State, code: str) -> Outcome:
    """Write in `code` from now on; the confirmation is already in it."""
    changed = state.idle().with_person(language=code)
    return Outcome((Reply(text(code, "language.set")),), changed, (SetLanguage(code),))


def on_button(state: State, payload: str) -> Outcome | None:
    """A language button, whenever it is pressed (None: not one of ours, or no such language)."""
    if not payload.startswith(PREFIX):
        return None
    code = payload.removeprefix(PREFIX)
    return choose(state, code) if code in languages() else None


def handle(state: State, event: Event) -> Outcome | None:
    """A press while the choices are on screen; anything else goes back to the router."""
    if event.kind is EventKind.BUTTON:
        return on_button(state, event.payload or "")
    return None
