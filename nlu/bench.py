"""NLU latency benchmark: the embedded interpreter in-process versus a Rasa server over HTTP."""

from __future__ import annotations

import re
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

# Realistic messages across the intents, none copied from the training data.
BENCH_MESSAGES: tuple[str, ...] = (
    "hey, it's me again",
    "good evening",
    "i really want a drink right now",
    "the urge to use is so strong tonight, like 8 out of 10",
    "been thinking about heroin all day",
    "craving a cigarette badly after that call",
    "i slipped last night and had a few beers",
    "i relapsed on meth after 40 days clean",
    "i used again. i feel like garbage",
    "90 days sober today!",
    "had a really good day, went to the gym and cooked dinner",
    "i feel so lonely since my divorce",
    "work is crushing me, i'm exhausted and angry",
    "i don't want to be here anymore",
    "sometimes i think everyone would be better off without me",
    "my friend took too many pills and won't wake up",
    "i'm shaking and sweating, day 2 without alcohol, is this dangerous",
    "can i talk to a real person who's been through this",
    "is there someone in recovery i could chat with",
    "where can i get detox near me",
    "how do i get on buprenorphine",
    "are there any NA meetings online tonight",
    "is there a SMART recovery group in my city",
    "where can i get naloxone",
    "how do i test my stuff for fentanyl",
    "what can i do instead of drinking when i'm bored",
    "give me a breathing exercise please",
    "i want to do my check-in",
    "log today's mood",
    "can you check on me tomorrow at 9",
    "remind me in two hours",
    "please stop messaging me for a while",
    "delete everything you have about me",
    "who can read what i write here",
    "is this anonymous?",
    "are you a bot or a human",
    "yes",
    "no, not really",
    "thanks, that helped",
    "what's the weather in paris",
)

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


def strip_annotations(example: str) -> str:
    """Plain text of a Rasa training example: '[beer](substance)' -> 'beer'."""
    return _ANNOTATION.sub(r"\1", example).strip()


def training_messages(data_dir: str | Path) -> list[str]:
    """Every NLU training example (annotations stripped) in a Rasa data folder's YAML files."""
    messages: list[str] = []
    for path in sorted(Path(data_dir).rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for block in doc.get("nlu") or []:
            if not isinstance(block, dict) or "intent" not in block:
                continue
            for line in str(block.get("examples") or "").splitlines():
                line = line.strip()
                if line.startswith("- "):
                    messages.append(strip_annotations(line[2:]))
    return messages


def percentile(samples: list[float], pct: float) -> float:
    """The pct-th percentile (linear interpolation between closest ranks)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident memory (VmHWM) of a process and its children in MB; None if unreadable."""
    if pid is None:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    total_kb = 0
    pids = [pid]
    seen: set[int] = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            if current == pid:
                return None
            continue
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        total_kb += int(match.group(1)) if match else 0
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pids.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return round(total_kb / 1024, 1)


def _summary(prefix: str, samples_s: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds under the given key prefix."""
    ms = [s * 1000 for s in samples_s]
    return {
        f"{prefix}_p50_ms": round(statistics.median(ms), 3),
        f"{prefix}_p99_ms": round(percentile(ms, 99), 3),
    }


def bench_embedded(messages: list[str], repeats: int, lang: str = "en") -> dict[str, float]:
    """Latency of EmbeddedInterpreter.parse_sync after loading and one warm-up pass."""
    from nlu.embedded import EmbeddedInterpreter

    started = time.perf_counter()
    interpreter = EmbeddedInterpreter.for_language(lang)
    load_s = time.perf_counter() - started
    for text in messages:
        interpreter.parse_sync(text)
    samples: list[float] = []
    for _ in range(repeats):
        for text in messages:
            t0 = time.perf_counter()
            interpreter.parse_sync(text)
            samples.append(time.perf_counter() - t0)
    result = _summary("embedded", samples)
    result["embedded_load_s"] = round(load_s, 3)
    result["embedded_peak_rss_mb"] = peak_rss_mb() or 0.0
    return result


async def bench_rasa(
    url: str,
    token: str | None,
    messages: list[str],
    repeats: int,
    pid: int | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, float]:
    """Latency of a Rasa server's /model/parse over one keep-alive connection, sequentially."""
    params = {"token": token} if token else {}
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), timeout=30.0, transport=transport
    ) as client:

        async def parse(text: str) -> None:
            response = await client.post("/model/parse", params=params, json={"text": text})
            if response.status_code != 200:
                raise RuntimeError(f"rasa answered HTTP {response.status_code}")
            if not isinstance(response.json().get("intent"), dict):
                raise RuntimeError("rasa answered without an intent")

        for text in messages:
            await parse(text)
        samples: list[float] = []
        for _ in range(repeats):
            for text in messages:
                t0 = time.perf_counter()
                await parse(text)
                samples.append(time.perf_counter() - t0)
    result = _summary("rasa", samples)
    rss = peak_rss_mb(pid) if pid is not None else None
    if rss is not None:
        result["rasa_peak_rss_mb"] = rss
    return result


async def bench_nlu(
    rasa_url: str | None,
    rasa_token: str | None,
    messages: list[str] | None = None,
    repeats: int = 5,
    *,
    rasa_pid: int | None = None,
    lang: str = "en",
) -> dict[str, Any]:
    """Parse latency (p50/p99 ms) and peak RSS of embedded NLU and, given a URL, of real Rasa."""
    texts = list(messages) if messages else list(BENCH_MESSAGES)
    result: dict[str, Any] = {"messages": len(texts), "repeats": repeats}
    result.update(bench_embedded(texts, repeats, lang))
    if rasa_url:
        result.update(await bench_rasa(rasa_url, rasa_token, texts, repeats, rasa_pid))
        if result["embedded_p50_ms"] > 0:
            result["speedup"] = round(result["rasa_p50_ms"] / result["embedded_p50_ms"], 1)
    return result
