"""EmbeddedInterpreter: intents and entities from the Rasa YAML, with scikit-learn and no server."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix, hstack
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from nlu.training_data import TrainingData, load_project
from nlu.understanding import FALLBACK_INTENT, Entity, IntentScore, Understanding

log = logging.getLogger(__name__)

NLU_DIR = Path(__file__).resolve().parent
LANGUAGES_DIR = NLU_DIR / "languages"

# Bump when featurisation or the cache layout changes: old cache files then stop matching.
MODEL_VERSION = 1
# Below this calibrated confidence the intent becomes out_of_scope. Chosen from the 5-fold CV
# threshold sweep (`python -m nlu.evaluate cv`): it sends few in-domain messages to the fallback.
DEFAULT_THRESHOLD = 0.35
# The classifier only reads this much text; long pastes otherwise cost time and add noise.
MAX_CLASSIFIER_CHARS = 1000
RANKING_LENGTH = 10
CHAR_NGRAMS = (2, 5)
# Word features weigh a bit more than char n-grams (CV: +0.4 macro-F1 points over 1.0).
WORD_BLOCK_WEIGHT = 1.5
# (kind, C) pairs tried by inner cross-validation at training time; the best macro-F1 wins.
# Logistic regression scored no better in CV on this data and trains ~20x slower.
DEFAULT_GRID: tuple[tuple[str, float], ...] = (("svm", 0.3), ("svm", 0.6), ("svm", 1.2))

_TRAIN_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Text normalisation


_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
    }
)
_REPEATS = re.compile(r"([^\W\d_])\1{2,}")
# Emoji presentation selectors and joiners carry no meaning for the classifier.
_INVISIBLES = re.compile("[\u200b-\u200d\ufe0e\ufe0f]")


def normalize(text: str) -> str:
    """Lowercase, straighten quotes and squeeze letters repeated 3+ times ("sooo" -> "soo")."""
    return _REPEATS.sub(r"\1\1", text.lower().translate(_QUOTES))


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` plus, for each of its characters, the index it came from in `text`."""
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for low in char.lower().translate(_QUOTES):
            # A letter already seen twice in a row is dropped: same rule as _REPEATS.
            if low.isalpha() and len(chars) >= 2 and chars[-1] == low and chars[-2] == low:
                continue
            chars.append(low)
            origin.append(index)
    return "".join(chars), origin


def classifier_text(text: str) -> str:
    """The text the intent classifier reads: normalised, truncated, apostrophes dropped."""
    # "can't", "can’t" and "cant" should be one word: people type all three.
    cleaned = normalize(text[:MAX_CLASSIFIER_CHARS]).replace("'", "")
    return _INVISIBLES.sub("", cleaned)


_WORD_TOKENS = re.compile(r"\w+|[^\w\s]")


# Emoji grouped by what they say, so an unseen sad emoji still reads as sad.
_EMOJI_GROUPS: dict[str, str] = {
    "sad": "😞😔😢😭😩😫😿💔☹🙁😟😥😓😪😣😖😕🥺",
    "angry": "😤😠😡🤬👿",
    "happy": "😊😁😀😃😄🙂😎🥳🎉🙌💪🤩😍🥰☺🎂✨🌞🌈🏆",
    "love": "❤🙏💙💜🧡💛💚🤍🖤♥🤗",
    "yes": "👍👌✅✔🆗",
    "no": "👎❌🚫🙅",
    "bye": "👋✌🌙😴💤",
    "laugh": "😂🤣💀😆😅",
}
_EMOJI_MARKERS = {
    char: f"__emoji_{group}__" for group, chars in _EMOJI_GROUPS.items() for char in chars
}


def word_features(text: str) -> list[str]:
    """Word unigrams and bigrams (punctuation and emoji count as words), plus emoji groups."""
    tokens = _WORD_TOKENS.findall(text)
    grams = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    grams.extend(_EMOJI_MARKERS[t] for t in tokens if t in _EMOJI_MARKERS)
    return grams


def char_features(text: str, lo: int = CHAR_NGRAMS[0], hi: int = CHAR_NGRAMS[1]) -> list[str]:
    """Character n-grams inside space-padded words (sklearn's char_wb)."""
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        size = len(padded)
        for n in range(lo, min(hi, size) + 1):
            grams.extend(padded[i : i + n] for i in range(size - n + 1))
    return grams


# ---------------------------------------------------------------------------------------------
# Entities


_TOKENS = re.compile(r"\w+")
_NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?|" + "|".join(_NUMBER_WORDS), re.IGNORECASE)


def _words(text: str) -> frozenset[str]:
    """A set of words written as one whitespace-separated string (keeps long lists compact)."""
    return frozenset(text.split())


_COUNTRY_CUES = _words("in the from to across within outside")
CUES_FILE = "cues.yml"


@dataclass(frozen=True)
class Cues:
    """A language's street names that are everyday words too ("ice cream", "speed limit",
    "montar a caballo", "соль и перец"): they count as substances only near a drug-use cue.
    Read from cues.yml in the language's project (nlu/cues.yml, nlu/languages/<code>/cues.yml).
    """

    needs_cue: frozenset[str] = frozenset()
    use_cues: frozenset[str] = frozenset()
    after_cues: frozenset[str] = frozenset()
    list_cues: frozenset[str] = frozenset()
    not_before: Mapping[str, frozenset[str]] = field(default_factory=dict)


def cues_path(language: str) -> Path | None:
    """The language's cues file, if its project has one."""
    try:
        path = project_dir_for(language) / CUES_FILE
    except LookupError:
        return None
    return path if path.is_file() else None


def load_cues(language: str) -> Cues:
    """The language's cue lists (none: every lookup word counts wherever it stands)."""
    import yaml

    path = cues_path(language)
    if path is None:
        return Cues()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def words(key: str) -> frozenset[str]:
        return _words(str(raw.get(key) or "").lower())

    not_before = {
        str(term).lower(): _words(str(after or "").lower())
        for term, after in (raw.get("not_before") or {}).items()
    }
    return Cues(
        words("needs_cue"), words("use_cues"), words("after_cues"), words("list_cues"), not_before
    )


def cues_digest(language: str) -> str:
    """What the cached model depends on from the cues file (entity markers are features)."""
    path = cues_path(language)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else ""


@dataclass(frozen=True)
class _Candidate:
    """A possible entity span in the normalised text."""

    start: int
    end: int
    entity: str
    value: str


class EntityExtractor:
    """Regexes, lookup tables and synonyms from the YAML, matched on whole words."""

    def __init__(
        self,
        regexes: Mapping[str, Sequence[re.Pattern[str]]],
        gazetteer: Mapping[tuple[str, ...], tuple[str, str]],
        synonyms: Mapping[str, str],
        cues: Cues | None = None,
    ) -> None:
        """Build from compiled regexes and a token-tuple -> (entity, value) gazetteer."""
        self.regexes = {name: tuple(patterns) for name, patterns in regexes.items()}
        self.gazetteer = dict(gazetteer)
        self.synonyms = dict(synonyms)
        self.cues = cues or Cues()
        self.max_terms = max((len(key) for key in self.gazetteer), default=0)

    @classmethod
    def from_training_data(cls, data: TrainingData, language: str = "en") -> EntityExtractor:
        """Regexes, lookups, synonyms and annotated example spans of a project."""
        regexes = {
            name: [re.compile(p, re.IGNORECASE) for p in patterns]
            for name, patterns in data.regexes.items()
        }
        gazetteer: dict[tuple[str, ...], tuple[str, str]] = {}
        canonical: dict[str, set[str]] = {}

        def add(entity: str, term: str, value: str) -> None:
            key = tuple(_TOKENS.findall(normalize(term)))
            if key:
                gazetteer.setdefault(key, (entity, value))

        # Lookup entries first: they are the curated list, annotations only add to it.
        for entity, terms in data.lookups.items():
            for term in terms:
                value = data.resolve(term)
                canonical.setdefault(entity, set()).add(value)
                add(entity, term, value)
        for example in data.examples:
            for span in example.entities:
                if span.entity in data.lookups:
                    canonical.setdefault(span.entity, set()).add(span.value)
                    add(span.entity, span.text, span.value)
        # A synonym key belongs to the entity whose canonical values include its value.
        for variant, value in data.synonyms.items():
            for entity, values in canonical.items():
                if value in values:
                    add(entity, variant, value)
        return cls(regexes, gazetteer, data.synonyms, load_cues(language))

    def extract(self, text: str) -> tuple[Entity, ...]:
        """All entities in `text`, with offsets into `text` itself."""
        if not text:
            return ()
        norm, origin = normalize_with_offsets(text)
        candidates = self._regex_candidates(norm) + self._lookup_candidates(norm, text, origin)
        # Longest span wins an overlap; regex candidates come first among equals.
        candidates.sort(key=lambda c: (c.start, -(c.end - c.start)))
        chosen: list[_Candidate] = []
        for cand in candidates:
            if chosen and cand.start < chosen[-1].end:
                continue
            chosen.append(cand)
        return tuple(
            Entity(c.entity, c.value, origin[c.start], origin[c.end - 1] + 1) for c in chosen
        )

    def _regex_candidates(self, norm: str) -> list[_Candidate]:
        """Spans the YAML regexes match (a `span` group narrows the span)."""
        found: list[_Candidate] = []
        for name, patterns in self.regexes.items():
            for pattern in patterns:
                for match in pattern.finditer(norm):
                    group = "span" if "span" in pattern.groupindex and match.group("span") else 0
                    start, end = match.span(group)
                    if start == end:
                        continue
                    value = self._regex_value(name, norm[start:end])
                    if value is not None:
                        found.append(_Candidate(start, end, name, value))
        return found

    def _regex_value(self, name: str, matched: str) -> str | None:
        """The canonical value of a regex match."""
        if name == "craving_level":
            # Digits first; number words ("на семь", "like a seven") through the synonyms.
            value = craving_level_value(matched)
            return value if value is not None else self.synonyms.get(matched.lower())
        return self.synonyms.get(matched.lower(), matched)

    def _lookup_candidates(self, norm: str, text: str, origin: list[int]) -> list[_Candidate]:
        """Whole-word matches of lookup entries, synonyms and annotated spans."""
        tokens = [(m.group(), m.start(), m.end()) for m in _TOKENS.finditer(norm)]
        words = [t[0] for t in tokens]
        found: list[_Candidate] = []
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_terms, len(tokens) - i), 0, -1):
                hit = self.gazetteer.get(tuple(words[i : i + n]))
                if hit is None or not self._plausible(
                    hit, words, i, n, text, origin, tokens, found
                ):
                    continue
                found.append(_Candidate(tokens[i][1], tokens[i + n - 1][2], hit[0], hit[1]))
                i += n
                break
            else:
                i += 1
        return found

    def _plausible(
        self,
        hit: tuple[str, str],
        words: list[str],
        i: int,
        n: int,
        text: str,
        origin: list[int],
        tokens: list[tuple[str, int, int]],
        found: list[_Candidate],
    ) -> bool:
        """Whether an everyday-word match ("us", "ice", "speed") is meant as the entity here."""
        if n != 1:
            return True
        word = words[i]
        before = words[max(0, i - 3) : i]
        after = words[i + 1] if i + 1 < len(words) else ""
        previous = before[-1] if before else ""
        if hit[0] == "country" and word == "us":
            # "help us" is not a country; "in the US", "from the us" and "US" typed so are.
            start, end = tokens[i][1], tokens[i][2]
            typed = text[origin[start] : origin[end - 1] + 1]
            shouting = text.upper() == text
            return previous in _COUNTRY_CUES or (typed == "US" and not shouting)
        cues = self.cues
        if after in cues.not_before.get(word, ()):
            return False
        if word not in cues.needs_cue:
            return True
        if previous in cues.list_cues:
            # "coke and molly": a list continues only right after another substance.
            return bool(found) and found[-1].entity == hit[0] and found[-1].end < tokens[i][1]
        return bool(cues.use_cues & set(before)) or after in cues.after_cues


def craving_level_value(matched: str) -> str | None:
    """The 0-10 level in a craving_level match, as a digit string ("8/10" -> "8")."""
    number = _NUMBER.search(matched)
    if number is None:
        return None
    raw = number.group().lower()
    level = float(_NUMBER_WORDS[raw]) if raw in _NUMBER_WORDS else float(raw.replace(",", "."))
    # "11/10" means "as bad as it gets"; half points round up (7.5 -> 8).
    return str(min(10, max(0, math.floor(level + 0.5))))


# ---------------------------------------------------------------------------------------------
# The model


def _entity_markers(entities: Iterable[Entity]) -> list[str]:
    """Word features saying which entities a message has (like Rasa's RegexFeaturizer)."""
    return [f"__{e.entity}__" for e in entities] + [f"__{e.entity}={e.value}__" for e in entities]


def _identity(doc: list[str]) -> list[str]:
    """Analyzer for already-featurised documents."""
    return doc


@dataclass(frozen=True)
class Model:
    """A fitted linear intent model reduced to arrays, so one parse is a few numpy calls."""

    classes: tuple[str, ...]
    word_vocab: Mapping[str, int]
    word_idf: np.ndarray
    char_vocab: Mapping[str, int]
    char_idf: np.ndarray
    weights: np.ndarray  # (n_word_features + n_char_features, n_classes)
    bias: np.ndarray  # (n_classes,)
    temperature: float
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, text: str, markers: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The tf-idf vector of one message as (indices, values), both blocks l2-normalised."""
        clf_text = classifier_text(text)
        word_idx, word_val = _tfidf(
            [*word_features(clf_text), *markers], self.word_vocab, self.word_idf
        )
        char_idx, char_val = _tfidf(char_features(clf_text), self.char_vocab, self.char_idf)
        return (
            np.concatenate([word_idx, char_idx + len(self.word_vocab)]),
            np.concatenate([word_val, char_val]),
        )

    def decision(self, text: str, markers: Sequence[str] = ()) -> np.ndarray:
        """Raw linear scores per class (what the sklearn classifier's decision_function gives)."""
        idx, val = self.features(text, markers)
        scores: np.ndarray = val @ self.weights[idx] + self.bias
        return scores

    def probabilities(self, text: str, markers: Sequence[str] = ()) -> np.ndarray:
        """Calibrated probabilities per class (temperature-scaled softmax of the scores)."""
        return _softmax(self.decision(text, markers) / self.temperature)


def _tfidf(
    terms: list[str], vocab: Mapping[str, int], idf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sublinear tf-idf with l2 norm, exactly as TfidfVectorizer(sublinear_tf=True) computes it."""
    counts: dict[int, int] = {}
    for term in terms:
        j = vocab.get(term)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    if not counts:
        return np.empty(0, dtype=np.intp), np.empty(0)
    idx = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
    values = (1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))) * idf[idx]
    norm = math.sqrt(float(values @ values))
    return idx, values / norm if norm else values


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large scores."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return result


@dataclass
class FittedPipeline:
    """The sklearn objects behind a Model (kept for tests that compare the two)."""

    word_vectorizer: TfidfVectorizer
    char_vectorizer: TfidfVectorizer
    classifier: LinearSVC | LogisticRegression
    model: Model

    def transform(self, docs: Sequence[tuple[str, Sequence[str]]]) -> csr_matrix:
        """sklearn's feature matrix for (text, markers) pairs."""
        return _stack(self.word_vectorizer, self.char_vectorizer, docs, fit=False)


def _documents(
    docs: Sequence[tuple[str, Sequence[str]]],
) -> tuple[list[list[str]], list[list[str]]]:
    """Word and char feature lists for (text, markers) pairs."""
    texts = [classifier_text(text) for text, _ in docs]
    words = [[*word_features(t), *markers] for t, (_, markers) in zip(texts, docs, strict=True)]
    return words, [char_features(t) for t in texts]


def _stack(
    word_vec: TfidfVectorizer,
    char_vec: TfidfVectorizer,
    docs: Sequence[tuple[str, Sequence[str]]],
    fit: bool,
) -> csr_matrix:
    """Both tf-idf blocks side by side (each block l2-normalised on its own)."""
    words, chars = _documents(docs)
    if fit:
        xw, xc = word_vec.fit_transform(words), char_vec.fit_transform(chars)
    else:
        xw, xc = word_vec.transform(words), char_vec.transform(chars)
    return csr_matrix(hstack([xw * WORD_BLOCK_WEIGHT, xc], format="csr"))


def _make_classifier(kind: str, c: float, seed: int) -> LinearSVC | LogisticRegression:
    """One linear classifier of the grid (balanced: intents have 45 to 110 examples)."""
    if kind == "svm":
        return LinearSVC(C=c, class_weight="balanced", random_state=seed, max_iter=5000)
    if kind == "logreg":
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    raise ValueError(f"unknown classifier kind {kind!r}")


def _fit(clf: LinearSVC | LogisticRegression, x: csr_matrix, y: np.ndarray) -> None:
    """Fit, tolerating a not-quite-converged solver (its weights are still usable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)


def _decision(clf: LinearSVC | LogisticRegression, x: csr_matrix, n_classes: int) -> np.ndarray:
    """decision_function as an (n, n_classes) array, also for two classes."""
    scores = np.asarray(clf.decision_function(x), dtype=float)
    if scores.ndim == 1:
        scores = np.column_stack([-scores / 2, scores / 2])
    return scores[:, :n_classes]


def _coef(clf: LinearSVC | LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) such that x @ weights + bias == decision as _decision returns it."""
    coef = np.asarray(clf.coef_, dtype=float)
    bias = np.asarray(clf.intercept_, dtype=float)
    if coef.shape[0] == 1:  # binary: one row scores class 1 against class 0
        coef = np.vstack([-coef / 2, coef / 2])
        bias = np.array([-bias[0] / 2, bias[0] / 2])
    # A copy: liblinear's coef_ may be Fortran-ordered, making .T a view we would later scale.
    return np.array(coef.T, dtype=float, order="C", copy=True), bias.copy()


def _macro_f1(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in gold or pred."""
    scores = []
    for k in range(n_classes):
        tp = int(np.sum((gold == k) & (pred == k)))
        fp = int(np.sum((gold != k) & (pred == k)))
        fn = int(np.sum((gold == k) & (pred != k)))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _fit_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The softmax temperature minimising log-loss on held-out scores (temperature scaling)."""

    def nll(log_t: float) -> float:
        z = scores / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(gold)), gold].mean())

    result = minimize_scalar(nll, bounds=(-6.0, 4.0), method="bounded")
    return float(math.exp(result.x))


def fit_pipeline(
    data: TrainingData,
    *,
    grid: Sequence[tuple[str, float]] = DEFAULT_GRID,
    seed: int = 13,
    inner_folds: int = 3,
    language: str = "en",
) -> FittedPipeline:
    """Train the intent model: pick a classifier by inner CV, calibrate, and fit on all data."""
    started = time.perf_counter()
    extractor = EntityExtractor.from_training_data(data, language)
    docs = [(ex.text, _entity_markers(extractor.extract(ex.text))) for ex in data.examples]
    classes = tuple(sorted(set(data.labels)))
    y = np.array([classes.index(label) for label in data.labels])
    word_vec = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, lowercase=False)
    char_vec = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, lowercase=False)
    # The vectorizers see all training data before the inner split: a small optimism in the
    # inner scores, shared by every candidate, so it does not bias which one is picked.
    x = _stack(word_vec, char_vec, docs, fit=True)
    folds = min(inner_folds, int(np.bincount(y).min()))
    scores: dict[str, float] = {}
    best: tuple[float, str, float, np.ndarray] | None = None
    if folds >= 2 and len(grid) > 0:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(len(y)), y))
        for kind, c in grid:
            oof = np.zeros((len(y), len(classes)))
            for train_idx, test_idx in splits:
                clf = _make_classifier(kind, c, seed)
                _fit(clf, x[train_idx], y[train_idx])
                oof[test_idx] = _decision(clf, x[test_idx], len(classes))
            f1 = _macro_f1(y, oof.argmax(axis=1), len(classes))
            scores[f"{kind}:C={c:g}"] = round(f1, 4)
            if best is None or f1 > best[0]:
                best = (f1, kind, c, oof)
    if best is None:
        kind, c = grid[0] if grid else DEFAULT_GRID[0]
        temperature = 1.0
    else:
        _, kind, c, oof = best
        temperature = _fit_temperature(oof, y)
    clf = _make_classifier(kind, c, seed)
    _fit(clf, x, y)
    weights, bias = _coef(clf)
    # Fold the word block's weight into the coefficients so parsing needs no extra multiply.
    weights[: len(word_vec.vocabulary_)] *= WORD_BLOCK_WEIGHT
    model = Model(
        classes=classes,
        word_vocab=dict(word_vec.vocabulary_),
        word_idf=np.asarray(word_vec.idf_, dtype=float),
        char_vocab=dict(char_vec.vocabulary_),
        char_idf=np.asarray(char_vec.idf_, dtype=float),
        weights=weights,
        bias=bias,
        temperature=temperature,
        info={
            "classifier": kind,
            "C": c,
            "temperature": round(temperature, 4),
            "inner_cv_macro_f1": scores,
            "examples": len(y),
            "features": int(x.shape[1]),
            "train_seconds": round(time.perf_counter() - started, 2),
            "sklearn": sklearn.__version__,
        },
    )
    return FittedPipeline(word_vec, char_vec, clf, model)


def train_model(data: TrainingData, *, seed: int = 13, language: str = "en") -> Model:
    """Train the intent model from training data (no cache)."""
    return fit_pipeline(data, seed=seed, language=language).model


# ---------------------------------------------------------------------------------------------
# Disk cache


def default_cache_dir() -> Path:
    """KINDRED_CACHE_DIR, else ~/.cache/kindred/nlu."""
    env = os.environ.get("KINDRED_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kindred" / "nlu"


def cache_key(data_hash: str, language: str) -> str:
    """What a cached model depends on: the data, sklearn, this code's model version."""
    material = json.dumps(
        {
            "data": data_hash,
            "sklearn": sklearn.__version__,
            "model_version": MODEL_VERSION,
            "language": language,
            "cues": cues_digest(language),
            "grid": [list(g) for g in DEFAULT_GRID],
            "char_ngrams": list(CHAR_NGRAMS),
            "word_block_weight": WORD_BLOCK_WEIGHT,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, language: str, key: str) -> Path:
    """Where the model for this key lives."""
    return cache_dir / f"embedded-{language}-{key[:24]}.npz"


def save_model(model: Model, path: Path, key: str) -> None:
    """Write the model atomically (temp file + rename), as arrays and JSON: no pickle."""
    meta = {
        "key": key,
        "classes": list(model.classes),
        "word_terms": _terms_in_order(model.word_vocab),
        "char_terms": _terms_in_order(model.char_vocab),
        "temperature": model.temperature,
        "info": model.info,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                word_idf=model.word_idf,
                char_idf=model.char_idf,
                weights=model.weights,
                bias=model.bias,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _terms_in_order(vocab: Mapping[str, int]) -> list[str]:
    """Vocabulary terms ordered by their column index."""
    terms = [""] * len(vocab)
    for term, index in vocab.items():
        terms[index] = term
    return terms


def load_model(path: Path, key: str) -> Model:
    """Read a cached model; raise ValueError if it is for another key or inconsistent."""
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        if meta.get("key") != key:
            raise ValueError("stale cache: key differs")
        word_idf, char_idf = archive["word_idf"], archive["char_idf"]
        weights, bias = archive["weights"], archive["bias"]
    classes = tuple(str(c) for c in meta["classes"])
    word_terms, char_terms = list(meta["word_terms"]), list(meta["char_terms"])
    shapes_ok = (
        word_idf.shape == (len(word_terms),)
        and char_idf.shape == (len(char_terms),)
        and weights.shape == (len(word_terms) + len(char_terms), len(classes))
        and bias.shape == (len(classes),)
        and np.all(np.isfinite(weights))
        and float(meta["temperature"]) > 0
    )
    if not shapes_ok:
        raise ValueError("corrupt cache: array shapes disagree")
    return Model(
        classes=classes,
        word_vocab={t: i for i, t in enumerate(word_terms)},
        word_idf=word_idf.astype(float),
        char_vocab={t: i for i, t in enumerate(char_terms)},
        char_idf=char_idf.astype(float),
        weights=np.ascontiguousarray(weights, dtype=float),
        bias=bias.astype(float),
        temperature=float(meta["temperature"]),
        info=dict(meta.get("info") or {}),
    )


# ---------------------------------------------------------------------------------------------
# The interpreter


def available_languages() -> list[str]:
    """Languages with a project: "en" at nlu/, others at nlu/languages/<code>/."""
    langs = ["en"]
    if LANGUAGES_DIR.is_dir():
        langs += sorted(
            p.name for p in LANGUAGES_DIR.iterdir() if (p / "data").is_dir() and p.name != "en"
        )
    return langs


def project_dir_for(language: str) -> Path:
    """The Rasa project directory of a language."""
    if language == "en":
        return NLU_DIR
    candidate = LANGUAGES_DIR / language
    if (
        not re.fullmatch(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]+)?", language)
        or not (candidate / "data").is_dir()
    ):
        raise LookupError(
            f"no NLU project for language {language!r}; available: "
            + ", ".join(available_languages())
        )
    return candidate


class EmbeddedInterpreter:
    """Intent classification and entity extraction in-process, trained from the Rasa YAML."""

    def __init__(
        self,
        model: Model,
        extractor: EntityExtractor,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        language: str = "en",
        loaded_from_cache: bool = False,
    ) -> None:
        """Wrap a fitted model and extractor; nothing here is mutated while parsing."""
        self.model = model
        self.extractor = extractor
        self.threshold = threshold
        self.language = language
        self.loaded_from_cache = loaded_from_cache
        self._fallback_index = (
            model.classes.index(FALLBACK_INTENT) if FALLBACK_INTENT in model.classes else None
        )

    @classmethod
    def for_language(cls, lang: str = "en", cache_dir: Path | None = None) -> EmbeddedInterpreter:
        """The interpreter for a language, from the disk cache when the data is unchanged."""
        return cls.from_project(project_dir_for(lang), cache_dir=cache_dir, language=lang)

    @classmethod
    def from_project(
        cls,
        project_dir: Path,
        *,
        cache_dir: Path | None = None,
        language: str = "en",
        use_cache: bool = True,
    ) -> EmbeddedInterpreter:
        """Load the project's YAML; reuse a cached model for the same data, else train one."""
        data = load_project(project_dir)
        extractor = EntityExtractor.from_training_data(data, language)
        if not use_cache:
            return cls(train_model(data, language=language), extractor, language=language)
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        key = cache_key(data.data_hash, language)
        path = cache_path(directory, language, key)
        with _TRAIN_LOCK:  # one training per process even when called from several threads
            try:
                model = load_model(path, key)
                return cls(model, extractor, language=language, loaded_from_cache=True)
            except FileNotFoundError:
                log.info("no cached NLU model at %s; training", path)
            except Exception as exc:  # any unreadable cache is only a reason to retrain
                log.warning("ignoring unusable NLU cache %s (%s); retraining", path, exc)
            model = train_model(data, language=language)
            try:
                save_model(model, path, key)
                _remove_stale(directory, language, keep=path)
            except OSError as exc:  # a read-only home must not stop the bot
                log.warning("could not write NLU cache %s: %s", path, exc)
        return cls(model, extractor, language=language)

    @classmethod
    def from_training_data(
        cls, data: TrainingData, *, language: str = "en", seed: int = 13
    ) -> EmbeddedInterpreter:
        """Train in memory from already-loaded data (cross-validation, tests)."""
        model = train_model(data, seed=seed, language=language)
        return cls(model, EntityExtractor.from_training_data(data, language), language=language)

    @property
    def intents(self) -> tuple[str, ...]:
        """The intents this model knows."""
        return self.model.classes

    def predict_proba(self, text: str) -> dict[str, float]:
        """Calibrated probability of every intent, highest first."""
        probs = self._probabilities(text, self.extractor.extract(text))
        order = np.argsort(-probs, kind="stable")
        return {self.model.classes[k]: float(probs[k]) for k in order}

    def _probabilities(self, text: str, entities: Sequence[Entity]) -> np.ndarray:
        """Class probabilities; markers come from the part of the text the classifier reads."""
        if len(text) > MAX_CLASSIFIER_CHARS:
            entities = self.extractor.extract(text[:MAX_CLASSIFIER_CHARS])
        return self.model.probabilities(text, _entity_markers(entities))

    def parse_sync(self, text: str) -> Understanding:
        """Understand one message (Rasa's /model/parse shape)."""
        if not text or not text.strip():
            fallback = IntentScore(FALLBACK_INTENT, 1.0)
            return Understanding(text=text, intent=fallback, intent_ranking=(fallback,))
        entities = self.extractor.extract(text)
        probs = self._probabilities(text, entities)
        order = np.argsort(-probs, kind="stable")[:RANKING_LENGTH]
        ranking = tuple(IntentScore(self.model.classes[k], float(probs[k])) for k in order)
        top = ranking[0]
        if top.confidence < self.threshold and top.name != FALLBACK_INTENT:
            return Understanding(
                text=text,
                intent=IntentScore(FALLBACK_INTENT, self.threshold),
                intent_ranking=ranking,
                entities=entities,
                source="fallback_threshold",
                extras={"predicted": top.name, "predicted_confidence": top.confidence},
            )
        return Understanding(text=text, intent=top, intent_ranking=ranking, entities=entities)

    async def parse(self, text: str) -> Understanding:
        """Understand one message (the Interpreter protocol); sub-millisecond, so no thread hop."""
        return self.parse_sync(text)


def _remove_stale(directory: Path, language: str, keep: Path) -> None:
    """Delete older cached models of this language (each is a few MB)."""
    for old in directory.glob(f"embedded-{language}-*.npz"):
        if old != keep:
            old.unlink(missing_ok=True)


def measure_latency(
    parse: Callable[[str], Understanding], texts: Sequence[str], repeat: int = 3
) -> dict[str, float]:
    """p50/p99 parse latency in milliseconds over `texts` (repeated)."""
    timings = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            parse(text)
            timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return {
        "p50_ms": round(timings[len(timings) // 2], 4),
        "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 4),
        "n": float(len(timings)),
    }
