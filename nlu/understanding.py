"""The typed result of understanding one message, in Rasa's /model/parse shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

INTENTS: tuple[str, ...] = (
    "greet",
    "goodbye",
    "thanks",
    "affirm",
    "deny",
    "craving",
    "lapse",
    "mood_positive",
    "mood_negative",
    "crisis_suicide",
    "crisis_overdose",
    "request_peer",
    "find_treatment",
    "find_meeting",
    "harm_reduction",
    "coping_help",
    "start_checkin",
    "set_reminder",
    "stop_reminders",
    "delete_data",
    "privacy_question",
    "bot_challenge",
    "out_of_scope",
)
CRISIS_INTENTS: frozenset[str] = frozenset({"crisis_suicide", "crisis_overdose"})
FALLBACK_INTENT = "out_of_scope"


@dataclass(frozen=True)
class Entity:
    """One extracted entity; start/end index into the original text."""

    entity: str
    value: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        """Rasa's entity shape."""
        return {"entity": self.entity, "value": self.value, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class IntentScore:
    """One intent with its confidence."""

    name: str
    confidence: float


@dataclass(frozen=True)
class Understanding:
    """What the bot understood: intent, ranking and entities (Rasa's parse shape)."""

    text: str
    intent: IntentScore
    intent_ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = ()
    # Why the intent is what it is: "embedded", "rasa", "safety_net", "fallback_threshold".
    source: str = "embedded"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_crisis(self) -> bool:
        """Whether the intent the bot acts on is a crisis."""
        return self.intent.name in CRISIS_INTENTS

    def entity(self, name: str) -> str | None:
        """The first value of the named entity, if any."""
        for ent in self.entities:
            if ent.entity == name:
                return ent.value
        return None

    def to_json(self) -> dict[str, Any]:
        """Rasa's /model/parse JSON shape."""
        return {
            "text": self.text,
            "intent": {"name": self.intent.name, "confidence": round(self.intent.confidence, 4)},
            "intent_ranking": [
                {"name": s.name, "confidence": round(s.confidence, 4)} for s in self.intent_ranking
            ],
            "entities": [e.to_json() for e in self.entities],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "rasa") -> Understanding:
        """Parse Rasa's /model/parse JSON into a typed value (the one place raw JSON is read)."""
        text = str(data.get("text", ""))
        raw_intent = data.get("intent") or {}
        name = str(raw_intent.get("name") or FALLBACK_INTENT)
        if name not in INTENTS:
            name = FALLBACK_INTENT
        intent = IntentScore(name, float(raw_intent.get("confidence") or 0.0))
        ranking = tuple(
            IntentScore(str(r["name"]), float(r.get("confidence") or 0.0))
            for r in data.get("intent_ranking") or []
            if isinstance(r, dict) and "name" in r
        )
        entities = tuple(
            Entity(
                str(e["entity"]),
                str(e.get("value", "")),
                int(e.get("start", 0)),
                int(e.get("end", 0)),
            )
            for e in data.get("entities") or []
            if isinstance(e, dict) and "entity" in e
        )
        return cls(
            text=text, intent=intent, intent_ranking=ranking, entities=entities, source=source
        )


class Interpreter(Protocol):
    """Anything that turns a message into an Understanding (before the safety net)."""

    async def parse(self, text: str) -> Understanding:
        """Understand one message."""
        ...
