"""Intent and entity metrics like `rasa test nlu`, and k-fold CV of the embedded model."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from nlu.training_data import Example, load_nlu_file, load_project
from nlu.understanding import FALLBACK_INTENT, Understanding

Parse = Callable[[str], Understanding]
DEFAULT_SEED = 13
SWEEP_THRESHOLDS: tuple[float, ...] = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


def _as_pair(example: Example | tuple[str, str]) -> tuple[str, str]:
    """(text, intent) from an Example or a plain pair."""
    if isinstance(example, Example):
        return example.text, example.intent
    text, intent = example
    return str(text), str(intent)


def classification_report(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1/support, macro and weighted averages, accuracy.

    Labels are those in gold or predicted (as sklearn and `rasa test` count them), so an intent
    that is predicted but never expected lowers the macro average.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    labels = sorted(set(gold) | set(predicted))
    pairs = Counter(zip(gold, predicted, strict=True))
    per_label: dict[str, dict[str, float | int]] = {}
    for label in labels:
        tp = pairs[(label, label)]
        support = sum(n for (g, _), n in pairs.items() if g == label)
        predicted_n = sum(n for (_, p), n in pairs.items() if p == label)
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
    total = len(gold)
    macro = {
        key: round(statistics.fmean(float(v[key]) for v in per_label.values()), 4)
        if labels
        else 0.0
        for key in ("precision", "recall", "f1")
    }
    weighted = {
        key: round(sum(float(v[key]) * int(v["support"]) for v in per_label.values()) / total, 4)
        if total
        else 0.0
        for key in ("precision", "recall", "f1")
    }
    correct = sum(n for (g, p), n in pairs.items() if g == p)
    confusions = [
        {"intent": g, "predicted": p, "count": n}
        for (g, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if g != p
    ]
    return {
        "examples": total,
        "accuracy": round(correct / total, 4) if total else 0.0,
        "macro": macro,
        "weighted": weighted,
        "per_intent": per_label,
        "confusions": confusions,
    }


Span = tuple[str, int, int]


def _entity_report(gold: Sequence[set[Span]], predicted: Sequence[set[Span]]) -> dict[str, Any]:
    """Precision/recall/F1 per entity type over exact (entity, start, end) spans.

    Spans, not values, as `rasa test` does: a test file's values may rely on synonyms it
    does not define itself.
    """
    kinds = sorted({e for s in [*gold, *predicted] for e, _, _ in s})
    report: dict[str, Any] = {}
    for kind in kinds:
        tp = fp = fn = 0
        for g, p in zip(gold, predicted, strict=True):
            g_k = {(a, b) for e, a, b in g if e == kind}
            p_k = {(a, b) for e, a, b in p if e == kind}
            tp += len(g_k & p_k)
            fp += len(p_k - g_k)
            fn += len(g_k - p_k)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[kind] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": tp + fn,
        }
    return report


def evaluate(
    interpreter_parse: Parse,
    examples: Iterable[Example | tuple[str, str]],
    *,
    max_errors: int = 50,
) -> dict[str, Any]:
    """Parse every example and report intent metrics (and entity metrics for Examples)."""
    gold: list[str] = []
    predicted: list[str] = []
    errors: list[dict[str, Any]] = []
    gold_entities: list[set[Span]] = []
    found_entities: list[set[Span]] = []
    has_entities = False
    for example in examples:
        text, intent = _as_pair(example)
        result = interpreter_parse(text)
        gold.append(intent)
        predicted.append(result.intent.name)
        if result.intent.name != intent and len(errors) < max_errors:
            errors.append(
                {
                    "text": text,
                    "intent": intent,
                    "predicted": result.intent.name,
                    "confidence": round(result.intent.confidence, 4),
                }
            )
        if isinstance(example, Example):
            has_entities = has_entities or bool(example.entities)
            gold_entities.append({(e.entity, e.start, e.end) for e in example.entities})
            found_entities.append({(e.entity, e.start, e.end) for e in result.entities})
    report = classification_report(gold, predicted)
    report["errors"] = errors
    if has_entities:
        report["entities"] = _entity_report(gold_entities, found_entities)
    return report


def evaluate_file(parse: Parse, path: Path | str) -> dict[str, Any]:
    """Evaluate a parser on a Rasa NLU YAML test file."""
    data = load_nlu_file(Path(path))
    report = evaluate(parse, data.examples)
    report["file"] = str(path)
    return report


def project_language(project_dir: Path | str) -> str:
    """The language of a project directory: nlu/languages/<code>/ is <code>, nlu/ English."""
    path = Path(project_dir).resolve()
    return path.name if path.parent.name == "languages" else "en"


def cross_validate(
    project_dir: Path | str,
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    language: str | None = None,
) -> dict[str, Any]:
    """Stratified k-fold CV of the embedded model: train on k-1 folds, evaluate the held-out one.

    The model is trained as the bot trains it for the project's language (its entity cues).
    """
    # Imported here so `evaluate` works for any parser without loading scikit-learn models.
    from nlu.embedded import EmbeddedInterpreter

    language = language or project_language(project_dir)
    started = time.perf_counter()
    data = load_project(Path(project_dir))
    labels = np.array(data.labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold: list[dict[str, Any]] = []
    # Pooled held-out predictions before the threshold, for the threshold sweep.
    raw_top: list[tuple[str, str, float]] = []
    pooled_gold: list[str] = []
    pooled_pred: list[str] = []
    threshold = None
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        interpreter = EmbeddedInterpreter.from_training_data(
            data.subset(train_idx), seed=seed, language=language
        )
        threshold = interpreter.threshold
        held_out = [data.examples[i] for i in test_idx]
        results = [interpreter.parse_sync(ex.text) for ex in held_out]
        gold = [ex.intent for ex in held_out]
        pred = [r.intent.name for r in results]
        report = classification_report(gold, pred)
        per_fold.append(
            {
                "fold": fold,
                "train": len(train_idx),
                "test": len(test_idx),
                "macro_f1": report["macro"]["f1"],
                "accuracy": report["accuracy"],
                "classifier": f"{interpreter.model.info.get('classifier')}:"
                f"C={interpreter.model.info.get('C')}",
            }
        )
        pooled_gold += gold
        pooled_pred += pred
        raw_top += [
            (ex.intent, r.intent_ranking[0].name, r.intent_ranking[0].confidence)
            for ex, r in zip(held_out, results, strict=True)
        ]
    f1s = [f["macro_f1"] for f in per_fold]
    overall = classification_report(pooled_gold, pooled_pred)
    return {
        "language": language,
        "folds": folds,
        "seed": seed,
        "examples": len(labels),
        "threshold": threshold,
        "macro_f1_mean": round(statistics.fmean(f1s), 4),
        "macro_f1_std": round(statistics.pstdev(f1s), 4),
        "accuracy_mean": round(statistics.fmean(f["accuracy"] for f in per_fold), 4),
        "per_fold": per_fold,
        "pooled": {k: overall[k] for k in ("accuracy", "macro", "per_intent")},
        "top_confusions": overall["confusions"][:15],
        "threshold_sweep": threshold_sweep(raw_top),
        "seconds": round(time.perf_counter() - started, 1),
    }


def threshold_sweep(
    raw_top: Sequence[tuple[str, str, float]], thresholds: Sequence[float] = SWEEP_THRESHOLDS
) -> list[dict[str, float]]:
    """Per threshold: macro-F1, accuracy and the share of in-scope messages sent to fallback."""
    in_scope = sum(1 for gold, _, _ in raw_top if gold != FALLBACK_INTENT)
    sweep = []
    for t in thresholds:
        pred = [p if c >= t or p == FALLBACK_INTENT else FALLBACK_INTENT for _, p, c in raw_top]
        gold = [g for g, _, _ in raw_top]
        report = classification_report(gold, pred)
        lost = sum(
            1 for (g, p, c) in raw_top if g != FALLBACK_INTENT and p != FALLBACK_INTENT and c < t
        )
        sweep.append(
            {
                "threshold": t,
                "macro_f1": report["macro"]["f1"],
                "accuracy": report["accuracy"],
                "fallback_rate": round(lost / in_scope, 4) if in_scope else 0.0,
            }
        )
    return sweep


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m nlu.evaluate cv [PROJECT]` or `python -m nlu.evaluate file PATH`: JSON out."""
    parser = argparse.ArgumentParser(prog="python -m nlu.evaluate", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cv = sub.add_parser("cv", help="k-fold cross-validation of the embedded model")
    cv.add_argument("project", nargs="?", default=str(Path(__file__).resolve().parent))
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--seed", type=int, default=DEFAULT_SEED)
    cv.add_argument("--lang", default=None, help="default: from the project directory")
    test = sub.add_parser("file", help="evaluate the embedded model on a Rasa NLU YAML file")
    test.add_argument("path")
    test.add_argument("--lang", default="en")
    args = parser.parse_args(argv)
    if args.command == "cv":
        result = cross_validate(args.project, folds=args.folds, seed=args.seed, language=args.lang)
    else:
        from nlu.embedded import EmbeddedInterpreter

        interpreter = EmbeddedInterpreter.for_language(args.lang)
        result = evaluate_file(interpreter.parse_sync, args.path)
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
