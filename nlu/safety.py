"""The safety net: the last layer of the intent pipeline, run on every message.

Whatever the classifier (embedded or Rasa) answered, a message about suicide, self-harm or an
overdose / medical emergency must reach the crisis flows. Three sources of evidence, in order:

1. The curated lexicon (``nlu/lexicon/<lang>.yml``): regular expressions over normalised text.
   A hit overrides the classifier (confidence 1.0).
2. Guards from the same file (figures of speech, questions, recovery milestones, old grief)
   cancel only the lexicon matches they overlap, so "i'm dying to see my kids but honestly i want
   to die" still fires on "want to die".
3. The classifier's own crisis probability (sum of the crisis intents in ``intent_ranking``):
   at or above ``escalation_threshold`` and with no guard anywhere in the message, the message
   is escalated to the more likely crisis intent.

A classifier that already says crisis is never downgraded. When the lexicon finds the other
crisis intent, the lexicon's choice wins (it is curated; e.g. "i want to od" is suicidal intent,
not an overdose in progress).

Suicide or overdose when both match: ``crisis_overdose`` wins when one of its unguarded hits has
a kind listed in the lexicon's ``resolution.overdose_wins_kinds`` (an ongoing medical emergency:
not breathing, unresponsive, seizure, chest pain); otherwise ``crisis_suicide`` wins ("i took a
bunch of pills, i want to die" is a suicide attempt: the suicide flow must treat it as an
emergency, and ``extras["safety"]["also"]`` tells it an overdose was mentioned too).

Speed: each rule is compiled once. A literal prefilter, derived automatically from the regexes,
knows which substrings a rule cannot match without; per message only the rules (and guards)
whose required substrings occur are run. One combined alternation per intent was measured at
about 1 microsecond per character per intent with Python's backtracking engine; the prefilter
skips most of that work while giving the same answers (a test checks this on the regression sets).

The message text is never copied into ``extras``: only rule ids, kinds and numbers.
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nlu.normalize import LEXICON_DIR, LexiconNotFoundError, Normalizer, load_lexicon
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
    "required_literals",
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
    # The other crisis intent, when it matched too (e.g. pills swallowed in a suicide attempt).
    also: str | None = None
    # Uncancelled hits found before the decision was settled (the scan stops early).
    hits: tuple[Hit, ...] = ()
    # Guards that cancelled at least one crisis match.
    cancelled_by: tuple[str, ...] = ()
    # Any guard anywhere in the message: vetoes the classifier-probability escalation.
    guarded: bool = False

    @property
    def is_crisis(self) -> bool:
        """Whether the lexicon found an (uncancelled) crisis."""
        return self.intent is not None


# ---- lexicon compilation ---------------------------------------------------------------------


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
    """Compile one pattern bounded by word edges, naming the rule on error."""
    try:
        return re.compile(f"{_LEFT}(?:{pattern}){_RIGHT}")
    except re.error as exc:
        raise ValueError(f"lexicon: bad regex in {where}: {exc}") from exc


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Whether two half-open spans share at least one character."""
    return a_start < b_end and b_start < a_end


# ---- literal prefilter -----------------------------------------------------------------------

# The regex parser of the standard library (private but stable since 3.11); without it every
# rule simply stays active, which is slower but gives the same answers.
try:
    _sre: Any = importlib.import_module("re._parser")
    _sre_c: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - other interpreters
    _sre = _sre_c = None

_SET_CAP = 256  # largest set of alternative strings tracked for one piece of a pattern
_GRAM = 3  # prefilter index key: the first characters of a required string


def _full_strings(items: Sequence[tuple[Any, Any]]) -> set[str] | None:
    """Every string a parsed sequence can match, if it is a small finite set; else None."""
    out = {""}
    for op, av in items:
        if op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
            continue  # zero-width
        item = _full_item(op, av)
        if item is None:
            return None
        out = {a + b for a in out for b in item}
        if len(out) > _SET_CAP:
            return None
    return out


def _full_item(op: Any, av: Any) -> set[str] | None:
    """Every string one parsed element can match, if finite and small."""
    c = _sre_c
    if op is c.LITERAL:
        return {chr(av)}
    if op is c.SUBPATTERN:
        return _full_strings(av[-1].data)
    if op is c.BRANCH:
        found: set[str] = set()
        for alt in av[1]:
            strings = _full_strings(alt.data)
            if strings is None:
                return None
            found |= strings
            if len(found) > _SET_CAP:
                return None
        return found
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        lo, hi, sub = av
        body = _full_strings(sub.data) if hi <= 3 else None
        if body is None:
            return None
        found, current = set(), {""}
        for count in range(hi + 1):
            if count >= lo:
                found |= current
            current = {a + b for a in current for b in body}
            if len(current) > _SET_CAP:
                return None
        return found
    if op is c.IN:
        chars = {chr(a) for o, a in av if o is c.LITERAL}
        return chars if len(chars) == len(av) else None
    return None


def _required(items: Sequence[tuple[Any, Any]]) -> frozenset[str] | None:
    """Strings of which any match of the sequence contains at least one (None: no such set)."""
    candidates: list[frozenset[str]] = []
    current: set[str] = {""}
    for op, av in items:
        if op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
            continue  # zero-width: the literal text around it stays contiguous
        item = _full_item(op, av)
        if item is not None and len(current) * len(item) <= _SET_CAP:
            current = {a + b for a in current for b in item}
            continue
        if "" not in current:
            candidates.append(frozenset(current))
        if item is not None:
            current = set(item)
            continue
        current = {""}
        inner = _required_item(op, av)
        if inner:
            candidates.append(inner)
    if "" not in current:
        candidates.append(frozenset(current))
    if not candidates:
        return None
    # The most selective: longest shortest string, then fewest strings.
    return max(candidates, key=lambda c: (min(len(s) for s in c), -len(c)))


def _required_item(op: Any, av: Any) -> frozenset[str] | None:
    """Required strings of one non-literal element."""
    c = _sre_c
    if op is c.SUBPATTERN:
        return _required(av[-1].data)
    if op is c.BRANCH:
        found: set[str] = set()
        for alt in av[1]:
            inner = _required(alt.data)
            if inner is None:
                return None
            found |= inner
        return frozenset(found)
    if op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
        return _required(av[2].data)
    return None


# Frequent words make poor prefilter keys (nearly every message has them).
_COMMON = frozenset(
    {
        "the",
        "and",
        "you",
        "that",
        "this",
        "with",
        "have",
        "will",
        "just",
        "been",
        "from",
        "they",
        "your",
        "what",
        "when",
        "want",
        "were",
        "there",
        "their",
        "them",
        "then",
        "than",
        "into",
        "about",
        "would",
        "could",
        "should",
        "really",
        "very",
        "some",
        "like",
        "much",
        "many",
        "more",
        "dont",
        "does",
        "did",
        "not",
        "are",
        "was",
        "its",
        "his",
        "her",
        "him",
        "she",
        "he",
        "who",
        "how",
        "why",
        "all",
        "any",
        "can",
        "get",
        "got",
        "had",
        "has",
        "for",
        "but",
        "out",
        "now",
        "one",
        "our",
        "off",
        "too",
        "way",
        "yes",
    }
)


def _core(s: str) -> str:
    """The most telling word of a required string (any substring of it is required too)."""
    words = [w for w in s.split(" ") if len(w) >= _GRAM]
    if not words:
        return s
    rare = [w for w in words if w not in _COMMON] or words
    return max(rare, key=len)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Substrings of which every match of `pattern` contains one; None when there is no such set.

    Each required string is reduced to its most telling word and the set is pruned of strings
    that contain another one: fewer, shorter needles make the per-message check cheap.
    """
    if _sre is None:
        return None
    try:
        strings = _required(_sre.parse(pattern).data)
    except Exception:  # an unexpected parse tree: stay safe, the rule is always run
        return None
    if not strings:
        return None
    cores = sorted({_core(x) for x in strings}, key=len)
    kept: list[str] = []
    for c in cores:
        if not any(k in c for k in kept):
            kept.append(c)
    return frozenset(kept)


class _Prefilter:
    """Which of N patterns can possibly match a text, from their required substrings."""

    def __init__(self, needles: Sequence[frozenset[str] | None]) -> None:
        """Index every required string by its first characters; short or absent sets: always."""
        self.always: frozenset[int] = frozenset(
            i for i, n in enumerate(needles) if not n or min(len(s) for s in n) < _GRAM
        )
        index: dict[str, list[tuple[str, int]]] = {}
        for i, strings in enumerate(needles):
            if i in self.always or not strings:
                continue
            for s in strings:
                index.setdefault(s[:_GRAM], []).append((s, i))
        self.index = index
        self.keys = frozenset(index)

    def active(self, text: str) -> set[int]:
        """Indexes of the patterns whose required strings occur in the text."""
        found = set(self.always)
        grams = {text[i : i + _GRAM] for i in range(len(text) - _GRAM + 1)}
        for key in grams & self.keys:
            for s, i in self.index[key]:
                if i not in found and s in text:
                    found.add(i)
        return found


# ---- the safety net --------------------------------------------------------------------------


@dataclass(eq=False)
class SafetyNet:
    """Lexicon + guards + classifier probability: override the intent when a crisis is likely."""

    lexicon: Mapping[str, Any] = field(repr=False)
    lang: str = "en"
    # Crisis probability (suicide + overdose in the ranking) at or above which an unguarded
    # message is escalated. 0.35: a crisis that is only the runner-up still reaches the flow.
    escalation_threshold: float = 0.35
    # Off: run every rule on every message (the reference the prefilter is tested against).
    prefilter: bool = True
    normalizer: Normalizer = field(init=False, repr=False)

    _cache: ClassVar[dict[str, SafetyNet]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __post_init__(self) -> None:
        """Compile the lexicon: one regex per rule and guard, and the prefilter index."""
        lex = self.lexicon
        self.normalizer = Normalizer(lex.get("normalize") or {})
        macros = {str(k): str(v) for k, v in (lex.get("macros") or {}).items()}
        intents = lex.get("intents") or {}
        unknown = set(intents) - CRISIS_INTENTS
        if unknown or not intents:
            raise ValueError(
                f"lexicon {self.lang!r}: intents must be crisis intents, got {unknown}"
            )
        rules: list[_Rule] = []
        seen: set[str] = set()
        for intent, entries in intents.items():
            for entry in entries or ():
                rid = str(entry["id"])
                if rid in seen:
                    raise ValueError(f"lexicon {self.lang!r}: duplicate rule id {rid}")
                seen.add(rid)
                body = _expand(str(entry["re"]), macros, f"{intent}/{rid}")
                rules.append(
                    _Rule(rid, intent, str(entry.get("kind", "lexicon")), _compile(body, rid))
                )
        guards: list[_Guard] = []
        for entry in lex.get("guards") or ():
            gid = str(entry["id"])
            cancels = frozenset(entry.get("cancels") or CRISIS_INTENTS)
            if not cancels <= CRISIS_INTENTS:
                raise ValueError(f"lexicon {self.lang!r}: guard {gid} cancels unknown intents")
            body = _expand(str(entry["re"]), macros, f"guard/{gid}")
            guards.append(_Guard(gid, cancels, _compile(body, gid)))
        # Suicide rules first: one suicide hit settles that side, then overdose is scanned for an
        # ongoing emergency (see _settled).
        rules.sort(key=lambda r: r.intent != SUICIDE)
        self._rules: tuple[_Rule, ...] = tuple(rules)
        self._guards: tuple[_Guard, ...] = tuple(guards)
        self._rule_filter = _Prefilter([required_literals(r.regex.pattern) for r in rules])
        self._guard_filter = _Prefilter([required_literals(g.regex.pattern) for g in guards])
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

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """Ids of the crisis rules, suicide first."""
        return tuple(r.id for r in self._rules)

    # ---- lexicon ---------------------------------------------------------------------------

    def assess(self, text: str) -> SafetyVerdict:
        """Run the lexicon and its guards on one raw message."""
        return self._assess(self.normalizer(text), guard_flag=True)

    def _assess(self, norm: str, guard_flag: bool) -> SafetyVerdict:
        """The lexicon on normalised text; the any-guard flag only when asked (it costs a scan)."""
        if self.prefilter:
            active_rules = sorted(self._rule_filter.active(norm))
            active_guards = sorted(self._guard_filter.active(norm))
        else:
            active_rules = list(range(len(self._rules)))
            active_guards = list(range(len(self._guards)))
        # Patterns and guards never span a sentence mark (their gaps are words only), so guards
        # are evaluated only in the sentences where a crisis pattern matched.
        ends = [m.end() for m in _SENTENCE_END.finditer(norm)]
        guard_cache: dict[int, list[GuardHit]] = {}
        hits: list[Hit] = []
        cancelled: list[str] = []
        settled: set[str] = set()
        for index in active_rules:
            rule = self._rules[index]
            if rule.intent in settled:
                continue
            pos = 0
            while pos <= len(norm):
                m = rule.regex.search(norm, pos)
                if m is None:
                    break
                guards = self._sentence_guards(norm, ends, m.start(), active_guards, guard_cache)
                blocker = self._blocker(guards, rule.intent, m.start(), m.end())
                if blocker is not None:
                    cancelled.append(blocker)
                    pos = m.start() + 1  # a shorter or later match may escape the guard
                    continue
                hits.append(Hit(rule.intent, rule.id, rule.kind, m.start(), m.end()))
                if self._settled(rule.intent, rule.kind):
                    settled.add(rule.intent)
                break  # one uncancelled hit per rule is enough
        if any(guard_cache.values()):
            guarded = True
        else:
            guarded = guard_flag and self._guard_anywhere(norm, active_guards)
        chosen = self._resolve(hits)
        also = None
        if chosen is not None:
            also = next((h.intent for h in hits if h.intent != chosen.intent), None)
        return SafetyVerdict(
            intent=chosen.intent if chosen else None,
            rule=chosen.rule if chosen else None,
            kind=chosen.kind if chosen else None,
            also=also,
            hits=tuple(hits),
            cancelled_by=tuple(dict.fromkeys(cancelled)),
            guarded=guarded,
        )

    def _settled(self, intent: str, kind: str) -> bool:
        """Whether more hits of this intent could change the decision (early exit)."""
        if intent == OVERDOSE:
            return kind in self.overdose_wins_kinds
        return True

    def _sentence_guards(
        self,
        norm: str,
        ends: list[int],
        position: int,
        active: list[int],
        cache: dict[int, list[GuardHit]],
    ) -> list[GuardHit]:
        """Guard matches in the sentence holding `position`, computed once per sentence."""
        sentence = bisect.bisect_right(ends, position)
        found = cache.get(sentence)
        if found is None:
            start = ends[sentence - 1] if sentence > 0 else 0
            stop = ends[sentence] if sentence < len(ends) else len(norm)
            found = []
            for index in active:
                guard = self._guards[index]
                found.extend(
                    GuardHit(guard.id, m.start(), m.end())
                    for m in guard.regex.finditer(norm, start, stop)
                )
            cache[sentence] = found
        return found

    def _guard_anywhere(self, norm: str, active: Iterable[int]) -> bool:
        """Whether any (possibly matching) guard matches anywhere in the normalised text."""
        return any(self._guards[i].regex.search(norm) for i in active)

    def _blocker(
        self, guard_hits: Iterable[GuardHit], intent: str, start: int, end: int
    ) -> str | None:
        """The id of a guard that overlaps this match and may cancel this intent, if any."""
        for gh in guard_hits:
            if _overlaps(gh.start, gh.end, start, end) and intent in self._cancels(gh.guard):
                return gh.guard
        return None

    def _cancels(self, guard_id: str) -> frozenset[str]:
        """The intents a guard may cancel."""
        return next(g.cancels for g in self._guards if g.id == guard_id)

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
        scores = {SUICIDE: 0.0, OVERDOSE: 0.0}
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
                if not verdict.also:
                    return understanding  # the classifier already agrees: keep its answer
                # Keep the classifier's answer, but the flows must know about the overdose too.
                extras = dict(understanding.extras)
                extras["safety"] = {
                    "rule": verdict.rule,
                    "kind": verdict.kind,
                    "also": verdict.also,
                    "lang": self.lang,
                    "overrode": None,
                }
                return dataclasses.replace(understanding, extras=extras)
            safety: dict[str, Any] = {"rule": verdict.rule, "kind": verdict.kind}
            if verdict.also:
                safety["also"] = verdict.also
            return self._override(understanding, verdict.intent, 1.0, safety)
        if current in CRISIS_INTENTS:
            return understanding  # never downgrade a classifier crisis
        probability, likely = self.crisis_probability(understanding)
        if probability < self.escalation_threshold:
            return understanding
        guarded = verdict.guarded or self._guard_anywhere(
            norm,
            self._guard_filter.active(norm) if self.prefilter else range(len(self._guards)),
        )
        if guarded:
            return understanding  # a figure of speech explains the classifier's doubt
        safety = {
            "rule": PROBABILITY_RULE,
            "kind": "classifier",
            "probability": round(probability, 4),
        }
        return self._override(understanding, likely, probability, safety)

    def _override(
        self, understanding: Understanding, intent: str, confidence: float, safety: dict[str, Any]
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


def available_lexicons() -> list[str]:
    """Languages that have a crisis lexicon (nlu/lexicon/<lang>.yml)."""
    return sorted(p.stem for p in LEXICON_DIR.glob("*.yml"))
