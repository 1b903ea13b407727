"""`kindred bench pipeline` on a small scale: the agreed figures, right transcripts, in order."""

from __future__ import annotations

import pytest

from bot.bench_pipeline import WARMUP_PEOPLE, bench_pipeline, compare_transcripts, summarize

FIGURES = {
    "updates_per_s",
    "p50_ms",
    "p99_ms",
    "floor_updates_per_s",
    "ratio",
    "peak_rss_mb",
    "in_order",
    "lost",
    "duplicates",
}


async def test_a_small_run_on_sqlite_answers_everyone_rightly_and_in_order() -> None:
    figures = await bench_pipeline(people=8, messages_per_person=6)
    assert set(figures) >= FIGURES
    assert figures["db"] == "sqlite" and figures["updates"] == 48
    assert figures["in_order"] and figures["floor_in_order"]
    assert figures["lost"] == figures["duplicates"] == figures["errors"] == 0
    assert figures["wrong_people"] == 0
    assert figures["updates_per_s"] > 0 and figures["floor_updates_per_s"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["ratio"] == pytest.approx(
        figures["updates_per_s"] / figures["floor_updates_per_s"], abs=0.01
    )
    assert figures["group_commit"] is None  # SQLite has one writer: nothing to share


@pytest.mark.postgres
async def test_a_small_run_on_postgresql_shares_transactions(postgres_url: str) -> None:
    figures = await bench_pipeline(db_url=postgres_url, people=12, messages_per_person=6)
    assert figures["db"] == "postgresql"
    assert figures["in_order"] and figures["lost"] == figures["duplicates"] == 0
    assert figures["errors"] == 0 and figures["wrong_people"] == 0
    group = figures["group_commit"]
    assert group["fallbacks"] == 0
    # Every update of the run went through a shared transaction (warm-up, burst and paced).
    warm_up = WARMUP_PEOPLE * 6
    assert group["updates"] == figures["updates"] + figures["paced_updates"] + warm_up
    assert group["mean_updates_per_batch"] > 1
    # Every update was kept in the inbox before it was acknowledged, none of it lost to a fault.
    inbox = figures["inbox"]
    assert inbox["kept"] >= group["updates"] and inbox["unavailable"] == 0


def test_an_update_started_before_the_previous_one_ended_is_out_of_order() -> None:
    # [update_id, person, fetched, started, done]
    in_turn = {"records": [[1, 7, 0.0, 0.1, 0.2], [2, 7, 0.0, 0.3, 0.4]], "errors": 0}
    overlapping = {"records": [[1, 7, 0.0, 0.1, 0.5], [2, 7, 0.0, 0.3, 0.6]], "errors": 0}
    swapped = {"records": [[2, 7, 0.0, 0.1, 0.2], [1, 7, 0.0, 0.3, 0.4]], "errors": 0}
    assert summarize(in_turn).order_violations == 0
    assert summarize(overlapping).order_violations == 1
    assert summarize(swapped).order_violations == 1


def test_a_missing_or_repeated_reply_is_counted() -> None:
    expected: dict[int, list[str | None]] = {1: ["a", "b"], 2: ["c"]}
    sent = [
        {"chat_id": 1, "raw_text": "a"},
        {"chat_id": 2, "raw_text": "c"},
        {"chat_id": 2, "raw_text": "c"},
    ]
    result = compare_transcripts(sent, expected)
    assert not result.in_order
    assert (result.wrong_people, result.lost, result.duplicates) == (2, 1, 1)
