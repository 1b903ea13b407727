"""Micro-benchmark of SafetyNet.check over the regression sets: p50/p99 microseconds per message.

Usage: python scripts/bench_safety.py [--lang en] [--repeat 20]
No assertions: it prints figures (the last line is one JSON object) for humans and CI logs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlu.safety import SafetyNet  # noqa: E402
from nlu.understanding import IntentScore, Understanding  # noqa: E402


def _messages(lang: str) -> list[str]:
    """Every message of the crisis and hard-negative regression sets of a language."""
    out: list[str] = []
    for name in (f"{lang}_crisis.tsv", f"{lang}_hard_negative.tsv"):
        path = ROOT / "tests" / "safety" / name
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                out.append(line.split("\t", 1)[1])
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def main(argv: list[str] | None = None) -> None:
    """Time check() per message (normalisation, lexicon, guards, override) and print figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    net = SafetyNet.for_language(args.lang)
    load_ms = (time.perf_counter() - started) * 1000
    # A non-crisis classifier answer, so every message goes through the full check path.
    inputs = [
        Understanding(
            text=text,
            intent=IntentScore("out_of_scope", 0.9),
            intent_ranking=(IntentScore("out_of_scope", 0.9), IntentScore("crisis_suicide", 0.05)),
        )
        for text in _messages(args.lang)
    ]
    for u in inputs:  # warm-up (regex caches, lazy structures)
        net.check(u)
    timings: list[float] = []
    best = [float("inf")] * len(inputs)  # per message, the quietest of the repeats
    clock = time.perf_counter_ns
    for _ in range(args.repeat):
        for i, u in enumerate(inputs):
            t0 = clock()
            net.check(u)
            elapsed = (clock() - t0) / 1000
            timings.append(elapsed)
            best[i] = min(best[i], elapsed)
    timings.sort()
    best.sort()
    long_text = " ".join(u.text for u in inputs)[:4096]
    long_u = Understanding(text=long_text, intent=IntentScore("out_of_scope", 0.9))
    t0 = clock()
    for _ in range(20):
        net.check(long_u)
    long_us = (clock() - t0) / 1000 / 20
    result = {
        "lang": args.lang,
        "messages": len(inputs),
        "checks": len(timings),
        "load_ms": round(load_ms, 1),
        "p50_us": round(_percentile(timings, 50), 1),
        "p99_us": round(_percentile(timings, 99), 1),
        "max_us": round(timings[-1], 1),
        "mean_us": round(statistics.fmean(timings), 1),
        "best_of_repeats_p50_us": round(_percentile(best, 50), 1),
        "best_of_repeats_p99_us": round(_percentile(best, 99), 1),
        "max_length_message_us": round(long_us, 1),
    }
    print(
        f"SafetyNet.check over {len(inputs)} messages x {args.repeat}: "
        f"p50 {result['p50_us']} us, p99 {result['p99_us']} us, max {result['max_us']} us "
        f"(quietest run per message: p50 {result['best_of_repeats_p50_us']} us, "
        f"p99 {result['best_of_repeats_p99_us']} us)"
    )
    print(
        f"a 4096-character message (regression sets glued together): "
        f"{result['max_length_message_us']} us; lexicon load {result['load_ms']} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
