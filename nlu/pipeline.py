"""The intent layer as the bot sees it: a backend (Rasa or embedded), then always the safety net."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from nlu.language_guess import likely_languages
from nlu.understanding import FALLBACK_INTENT, IntentScore, Interpreter, Understanding

log = logging.getLogger(__name__)

# Telegram caps a message at 4096 characters; the classifier needs far less than that.
MAX_TEXT_CHARS = 4096


class SafetyCheck(Protocol):
    """What the pipeline needs of a safety net (nlu.safety.SafetyNet)."""

    def check(self, understanding: Understanding) -> Understanding:
        """Override the intent when the message is about a crisis."""
        ...


@dataclass
class NluPipeline:
    """Backend first, safety net last, on every message, whatever the backend said."""

    backend: Interpreter
    safety: SafetyCheck
    language: str = "en"
    # Other languages' safety nets: people do not always write in their phone's language.
    other_safety: Mapping[str, SafetyCheck] = field(default_factory=dict)

    async def parse(self, text: str) -> Understanding:
        """Understand one message; a failing backend never hides a crisis."""
        text = text[:MAX_TEXT_CHARS]
        try:
            understood = await self.backend.parse(text)
        except Exception:
            log.exception("nlu backend failed; safety net only")
            understood = Understanding(
                text=text, intent=IntentScore(FALLBACK_INTENT, 0.0), source="backend_error"
            )
        checked = self.safety.check(understood)
        if checked.is_crisis or not self.other_safety:
            return checked
        neutral = Understanding(text=text, intent=IntentScore(FALLBACK_INTENT, 1.0))
        for lang in sorted(likely_languages(text) - {self.language}):
            other = self.other_safety.get(lang)
            if other is None:
                continue
            crisis = other.check(neutral)
            if crisis.is_crisis:
                return dataclasses.replace(crisis, entities=checked.entities)
        return checked

    def lexicon_says_crisis(self, text: str) -> bool:
        """Whether the safety net's own wording lists (not the classifier) see a crisis."""
        neutral = Understanding(text=text, intent=IntentScore(FALLBACK_INTENT, 1.0))
        nets = [self.safety, *self.other_safety.values()]
        return any(net.check(neutral).is_crisis for net in nets)


def build_pipeline(
    language: str = "en",
    backend: str = "embedded",
    rasa_url: str | None = None,
    rasa_token: str | None = None,
) -> NluPipeline:
    """The pipeline for one language: Rasa with the embedded fallback, or embedded alone."""
    from nlu.embedded import EmbeddedInterpreter
    from nlu.safety import SafetyNet, available_lexicons

    embedded = EmbeddedInterpreter.for_language(language)
    chosen: Interpreter = embedded
    if backend == "rasa" or (backend == "auto" and rasa_url):
        if not rasa_url:
            raise ValueError("the rasa backend needs RASA_URL")
        from nlu.rasa_client import RasaInterpreter

        chosen = RasaInterpreter(rasa_url, rasa_token, fallback=embedded)
    others = {
        lang: SafetyNet.for_language(lang) for lang in available_lexicons() if lang != language
    }
    return NluPipeline(chosen, SafetyNet.for_language(language), language, others)
