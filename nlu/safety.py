"""The safety net: the last layer of the intent pipeline, run on every message.

Whatever the classifier (embedded or Rasa) answered, a message about suicide, self-harm or an
overdose / medical emergency must reach the crisis flows. Three sources of evidence, in order:

1. The curated lexicon (``nlu/lexicon/<lang>.yml``): regular expressions over normalised text,
   one combined regex per crisis intent. A hit overrides the classifier (confidence 1.0).
2. Guards from the same file (figures of speech, questions, recovery milestones, old grief)
   cancel only the lexicon matches they overlap, so "i'm dying to see my kids but honestly i want
   to die" still fires on "want to die".
3. The classifier's own crisis probability (sum of the crisis intents in ``intent_ranking``):
   above ``escalation_threshold`` and with no guard anywhere in the message, the message is
   escalated to the more likely crisis intent.

A classifier that already says crisis is never downgraded. When the lexicon finds the other
crisis intent, the lexicon's choice wins (it is curated; e.g. "i want to od" is suicidal intent,
not an overdose in progress).

Suicide or overdose when both match: ``crisis_overdose`` wins when one of its unguarded hits has
a kind listed in the lexicon's ``resolution.overdose_wins_kinds`` (an ongoing medical emergency:
not breathing, unresponsive, pills already swallowed, seizure); otherwise ``crisis_suicide`` wins,
because a bare mention of overdosing next to suicidal words is suicidal intent.

The message text is never copied into ``extras``: only rule ids, kinds and numbers.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nlu.normalize import LexiconNotFoundError, Normalizer, load_lexicon
from nlu.understanding import CRISIS_INTENTS, IntentScore, Understanding

SUICIDE = "crisis_suicide"
OVERDOSE = "crisis_overdose"
SOURCE = "safety_net"
PROBABILITY_RULE = "classifier_probability"

_MACRO = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
# Word edges that also work when a pattern starts or ends with a non-word character.
_LEFT = r"(?<![^\W_])"
_RIGHT = r"(?![^\W_])"
# A sentence mark token of the normalised text (" . " or " ? "), not the dot of "2.5".
_SENTENCE_END = re.compile(r"(?<![^ ])[.?](?= |$)")

__all__ = [
    "OVERDOSE",
    "SUICIDE",
    "GuardHit",
    "Hit",
    "LexiconNotFoundError",
    "SafetyNet",
    "SafetyVerdict",
]


@dataclass(frozen=True)
class _Rule:
    """One crisis pattern of the lexicon."""

    id: str
    intent: str
    kind: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class _Guard:
    """One figure-of-speech / negation pattern and the intents it may cancel."""

    id: str
    cancels: frozenset[str]
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Hit:
    """A lexicon match that no guard cancelled (offsets index the normalised text)."""

    intent: str
    rule: str
    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class GuardHit:
    """A guard match (offsets index the normalised text)."""

    guard: str
    start: int
    end: int


@dataclass(frozen=True)
class SafetyVerdict:
    """What the lexicon alone says about one message."""

    intent: str | None
    rule: str | None = None
    kind: str | None = None
    hits: tuple[Hit, ...] = ()
    # Guards that cancelled at least one crisis match.
    cancelled_by: tuple[str, ...] = ()
    # Any guard anywhere in the message: vetoes the classifier-probability escalation.
    guarded: bool = False

    @property
    def is_crisis(self) -> bool:
        """Whether the lexicon found an (uncancelled) crisis."""
        return self.intent is not None


def _expand(pattern: str, macros: Mapping[str, str], where: str, depth: int = 0) -> str:
    """Replace {NAME} macros, recursively, with a clear error for unknown names or loops."""
    if depth > 8:
        raise ValueError(f"lexicon: macro recursion too deep in {where}")

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in macros:
            raise ValueError(f"lexicon: unknown macro {{{name}}} in {where}")
        return _expand(macros[name], macros, where, depth + 1)

    return _MACRO.sub(sub, pattern)


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    """Compile one bounded pattern, naming the rule on error."""
    try:
        return re.compile(f"{_LEFT}(?:{pattern}){_RIGHT}")
    except re.error as exc:
        raise ValueError(f"lexicon: bad regex in {where}: {exc}") from exc


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Whether two half-open spans share at least one character."""
    return a_start < b_end and b_start < a_end


@dataclass
class SafetyNet:
    """Lexicon + guards + classifier probability: override the intent when a crisis is likely."""

    lexicon: Mapping[str, Any]
    lang: str = "en"
    # Crisis probability (suicide + overdose in the ranking) at or above which an unguarded
    # message is escalated. 0.35: a crisis that is only the runner-up still reaches the flow.
    escalation_threshold: float = 0.35
    normalizer: Normalizer = field(init=False, repr=False)

    _cache: ClassVar[dict[str, SafetyNet]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __post_init__(self) -> None:
        """Compile the lexicon: one combined regex per intent, one per rule, one for all guards."""
        lex = self.lexicon
        self.normalizer = Normalizer(lex.get("normalize") or {})
        macros = {str(k): str(v) for k, v in (lex.get("macros") or {}).items()}
        intents = lex.get("intents") or {}
        unknown = set(intents) - CRISIS_INTENTS
        if unknown or not intents:
            raise ValueError(f"lexicon {self.lang!r}: intents must be crisis intents, got {unknown}")
        self._rules: dict[str, tuple[_Rule, ...]] = {}
        self._combined: dict[str, re.Pattern[str]] = {}
        for intent, entries in intents.items():
            rules: list[_Rule] = []
            parts: list[str] = []
            for i, entry in enumerate(entries or ()):
                rid = str(entry["id"])
                body = _expand(str(entry["re"]), macros, f"{intent}/{rid}")
                rule = _Rule(rid, intent, str(entry.get("kind", "lexicon")), _compile(body, rid))
                rules.append(rule)
                parts.append(f"(?P<r{i}>{body})")
            self._rules[intent] = tuple(rules)
            self._combined[intent] = _compile("|".join(parts), f"{intent} (combined)")
        guards: list[_Guard] = []
        for entry in lex.get("guards") or ():
            gid = str(entry["id"])
            cancels = frozenset(entry.get("cancels") or CRISIS_INTENTS)
            if not cancels <= CRISIS_INTENTS:
                raise ValueError(f"lexicon {self.lang!r}: guard {gid} cancels unknown intents")
            body = _expand(str(entry["re"]), macros, f"guard/{gid}")
            guards.append(_Guard(gid, cancels, _compile(body, gid)))
        self._guards: tuple[_Guard, ...] = tuple(guards)
        self._guard_cancels: dict[str, frozenset[str]] = {g.id: g.cancels for g in guards}
        self._any_guard: re.Pattern[str] | None = (
            _compile("|".join(g.regex.pattern for g in guards), "guards (combined)")
            if guards
            else None
        )
        resolution = lex.get("resolution") or {}
        self.overdose_wins_kinds: frozenset[str] = frozenset(
            str(k) for k in resolution.get("overdose_wins_kinds") or ()
        )

    @classmethod
    def for_language(cls, lang: str = "en") -> SafetyNet:
        """The safety net for a language, built once (raises LexiconNotFoundError if missing)."""
        key = (lang or "en").lower()
        with cls._cache_lock:
            net = cls._cache.get(key)
            if net is None:
                net = cls(load_lexicon(key), lang=key)
                cls._cache[key] = net
            return net

    # ---- lexicon ---------------------------------------------------------------------------

    def assess(self, text: str) -> SafetyVerdict:
        """Run the lexicon and its guards on one raw message."""
        return self._assess(self.normalizer(text), guard_flag=True)

    def _assess(self, norm: str, guard_flag: bool) -> SafetyVerdict:
        """The lexicon on normalised text; the any-guard flag only when asked (it costs a scan)."""
        # Patterns and guards never span a sentence mark (their gaps are words only), so guards
        # are evaluated only on the sentences where a crisis pattern matched: cheap on long texts.
        ends = [m.end() for m in _SENTENCE_END.finditer(norm)]
        guard_cache: dict[int, list[GuardHit]] = {}
        hits: list[Hit] = []
        cancelled: list[str] = []
        for intent, combined in self._combined.items():
            rules = self._rules[intent]
            pos = 0
            while pos <= len(norm):
                m = combined.search(norm, pos)
                if m is None:
                    break
                guards = self._sentence_guards(norm, ends, m.start(), guard_cache)
                rule = rules[int(str(m.lastgroup)[1:])]
                blocker = self._blocker(guards, intent, m.start(), m.end())
                if blocker is None:
                    hits.append(Hit(intent, rule.id, rule.kind, m.start(), m.end()))
                    if self._settled(intent, rule.kind):
                        break
                    pos = m.end()
                    continue
                cancelled.append(blocker)
                # Another rule may match at the same place without overlapping any guard.
                for other in rules:
                    if other is rule:
                        continue
                    om = other.regex.match(norm, m.start())
                    if om and self._blocker(guards, intent, om.start(), om.end()) is None:
                        hits.append(Hit(intent, other.id, other.kind, om.start(), om.end()))
                        break
                pos = m.start() + 1
        if any(guard_cache.values()):
            guarded = True
        else:
            guarded = guard_flag and self._guard_anywhere(norm)
        chosen = self._resolve(hits)
        return SafetyVerdict(
            intent=chosen.intent if chosen else None,
            rule=chosen.rule if chosen else None,
            kind=chosen.kind if chosen else None,
            hits=tuple(hits),
            cancelled_by=tuple(dict.fromkeys(cancelled)),
            guarded=guarded,
        )

    def _settled(self, intent: str, kind: str) -> bool:
        """Whether more hits of this intent could change the decision (early exit on long texts)."""
        if intent == OVERDOSE:
            return kind in self.overdose_wins_kinds
        return True

    def _sentence_guards(
        self, norm: str, ends: list[int], position: int, cache: dict[int, list[GuardHit]]
    ) -> list[GuardHit]:
        """Guard matches in the sentence holding `position`, computed once per sentence."""
        index = bisect.bisect_right(ends, position)
        found = cache.get(index)
        if found is None:
            start = ends[index - 1] if index > 0 else 0
            stop = ends[index] if index < len(ends) else len(norm)
            found = [
                GuardHit(g.id, m.start(), m.end())
                for g in self._guards
                for m in g.regex.finditer(norm, start, stop)
            ]
            cache[index] = found
        return found

    def _guard_anywhere(self, norm: str) -> bool:
        """Whether any guard matches anywhere in the normalised text."""
        return self._any_guard is not None and self._any_guard.search(norm) is not None

    def _blocker(self, guard_hits: Iterable[GuardHit], intent: str, start: int, end: int) -> str | None:
        """The id of a guard that overlaps this match and may cancel this intent, if any."""
        for gh in guard_hits:
            if intent in self._guard_cancels[gh.guard] and _overlaps(gh.start, gh.end, start, end):
                return gh.guard
        return None

    def _resolve(self, hits: list[Hit]) -> Hit | None:
        """Pick the hit to act on: an ongoing overdose emergency, else suicide, else overdose."""
        acute = [h for h in hits if h.intent == OVERDOSE and h.kind in self.overdose_wins_kinds]
        if acute:
            return min(acute, key=lambda h: h.start)
        for intent in (SUICIDE, OVERDOSE):
            found = [h for h in hits if h.intent == intent]
            if found:
                return min(found, key=lambda h: h.start)
        return None

    # ---- pipeline --------------------------------------------------------------------------

    @staticmethod
    def crisis_probability(understanding: Understanding) -> tuple[float, str]:
        """Sum of the classifier's crisis confidences, and the more likely crisis intent."""
        scores = {name: 0.0 for name in (SUICIDE, OVERDOSE)}
        ranking = understanding.intent_ranking or (understanding.intent,)
        for score in ranking:
            if score.name in scores:
                scores[score.name] = max(scores[score.name], float(score.confidence))
        likely = OVERDOSE if scores[OVERDOSE] > scores[SUICIDE] else SUICIDE
        return min(1.0, scores[SUICIDE] + scores[OVERDOSE]), likely

    def check(self, understanding: Understanding) -> Understanding:
        """The understanding unchanged, or a copy whose intent is the crisis the message shows."""
        norm = self.normalizer(understanding.text)
        verdict = self._assess(norm, guard_flag=False)
        current = understanding.intent.name
        if verdict.intent is not None:
            if current == verdict.intent:
                return understanding  # the classifier already agrees: keep its answer
            return self._override(
                understanding, verdict.intent, 1.0, rule=str(verdict.rule), kind=str(verdict.kind)
            )
        if current in CRISIS_INTENTS:
            return understanding  # never downgrade a classifier crisis
        probability, likely = self.crisis_probability(understanding)
        if probability >= self.escalation_threshold and not (
            verdict.guarded or self._guard_anywhere(norm)
        ):
            return self._override(
                understanding,
                likely,
                probability,
                rule=PROBABILITY_RULE,
                kind="classifier",
                probability=round(probability, 4),
            )
        return understanding

    def _override(
        self, understanding: Understanding, intent: str, confidence: float, **safety: Any
    ) -> Understanding:
        """A copy with the crisis intent on top; only ids and numbers go into extras."""
        top = IntentScore(intent, confidence)
        ranking = (top, *(s for s in understanding.intent_ranking if s.name != intent))
        extras = dict(understanding.extras)
        extras["safety"] = {**safety, "lang": self.lang, "overrode": understanding.intent.name}
        return dataclasses.replace(
            understanding,
            intent=top,
            intent_ranking=ranking,
            source=SOURCE,
            extras=extras,
        )
