"""`kindred bench delivery` on a small scale: every follow-up once, no 429, the agreed figures."""

from __future__ import annotations

from bot.bench_delivery import bench_delivery


async def test_a_small_delivery_bench_sends_each_once_without_a_429() -> None:
    figures = await bench_delivery(90, renice=False)
    assert {"followups", "delivered", "lost", "duplicates", "http_429", "rate_per_s"} <= set(
        figures
    )
    assert figures["followups"] == figures["delivered"] == 90
    assert figures["lost"] == figures["duplicates"] == figures["http_429"] == 0
    assert figures["statuses"] == {"sent": 90}
    assert 0 < figures["rate_per_s"] <= 30
