"""SafetyNet recall on each language's crisis set and false alarms on its hard negatives.

Usage: python scripts/safety_recall.py [--lang es ...] [--out FILE]

Three readings per language: the language's own SafetyNet on the wording alone (lexicon, the
classifier's intent neutral); the full pipeline of that language (embedded NLU, then the safety
nets); and the English pipeline, as someone whose Telegram is English but who writes in that
language gets (its other-language safety nets). Prints one JSON object.

When tests/safety/<lang>_fresh_crisis.tsv and <lang>_fresh_negative.tsv exist (small held-out
sets written before a retraining and never trained on), the full pipeline's reading of them is
reported too, under "fresh_own_pipeline".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlu.pipeline import NluPipeline, build_pipeline  # noqa: E402
from nlu.safety import SafetyNet  # noqa: E402
from nlu.understanding import FALLBACK_INTENT, IntentScore, Understanding  # noqa: E402


def _rows(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, text = line.split("\t", 1)
            rows.append((intent, text))
    return rows


def _lexicon(net: SafetyNet, text: str) -> Understanding:
    return net.check(Understanding(text=text, intent=IntentScore(FALLBACK_INTENT, 1.0)))


def _score(
    crisis: list[tuple[str, str]], negatives: list[tuple[str, str]], read: list[Understanding]
) -> dict[str, Any]:
    found = read[: len(crisis)]
    alarms = read[len(crisis) :]
    caught = sum(1 for u in found if u.is_crisis)
    exact = sum(1 for (intent, _), u in zip(crisis, found, strict=True) if u.intent.name == intent)
    false = [text for (_, text), u in zip(negatives, alarms, strict=True) if u.is_crisis]
    return {
        "crisis_messages": len(crisis),
        "recall": round(caught / len(crisis), 4),
        "missed": [t for (_, t), u in zip(crisis, found, strict=True) if not u.is_crisis][:20],
        "right_crisis_kind": round(exact / len(crisis), 4),
        "hard_negatives": len(negatives),
        "false_alarm_rate": round(len(false) / len(negatives), 4),
        "false_alarms": false[:20],
    }


async def _pipeline_reads(pipeline: NluPipeline, texts: list[str]) -> list[Understanding]:
    return [await pipeline.parse(text) for text in texts]


def measure(lang: str, english: NluPipeline) -> dict[str, Any]:
    """The three readings of one language's sets."""
    crisis = _rows(ROOT / "tests" / "safety" / f"{lang}_crisis.tsv")
    negatives = _rows(ROOT / "tests" / "safety" / f"{lang}_hard_negative.tsv")
    texts = [t for _, t in crisis] + [t for _, t in negatives]
    net = SafetyNet.for_language(lang)
    own = build_pipeline(lang, "embedded")
    result = {
        "lexicon_only": _score(crisis, negatives, [_lexicon(net, t) for t in texts]),
        "own_pipeline": _score(crisis, negatives, asyncio.run(_pipeline_reads(own, texts))),
    }
    fresh_crisis = ROOT / "tests" / "safety" / f"{lang}_fresh_crisis.tsv"
    fresh_negative = ROOT / "tests" / "safety" / f"{lang}_fresh_negative.tsv"
    if fresh_crisis.exists() and fresh_negative.exists():
        crisis_f, negatives_f = _rows(fresh_crisis), _rows(fresh_negative)
        texts_f = [t for _, t in crisis_f] + [t for _, t in negatives_f]
        reads_f = asyncio.run(_pipeline_reads(own, texts_f))
        result["fresh_own_pipeline"] = _score(crisis_f, negatives_f, reads_f)
    if lang != "en":
        english_reads = asyncio.run(_pipeline_reads(english, texts))
        result["english_telegram_pipeline"] = _score(crisis, negatives, english_reads)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lang", nargs="*", default=["en", "es", "ru"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    english = build_pipeline("en", "embedded")
    figures = {lang: measure(lang, english) for lang in args.lang}
    text = json.dumps(figures, ensure_ascii=False, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
