"""Prometheus metrics: Kindred's own registry, event counters, and figures read at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import REGISTRY as GLOBAL_REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.db.engine import sessionmaker
from bot.db.models import Escalation, FollowUp, User
from nlu.embedded import EmbeddedInterpreter
from nlu.rasa_client import RasaInterpreter
from tests import isolated_db
from tests.conftest import unique_user

# This module's own database: queue depths are counted over every row.
fresh_db_url = isolated_db.fresh_db_url
fresh_engine = isolated_db.fresh_engine


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counters_live_on_kindreds_registry_not_the_global_one() -> None:
    before = metrics.UPDATES.labels("text")._value.get()
    metrics.observe_update("text", 0.12)
    metrics.crisis_detected("crisis_overdose")
    metrics.telegram_429("sendMessage")
    metrics.send_retry("sendMessage")
    metrics.scheduler_lag(4.0)
    metrics.escalation_claimed(95.0)
    assert metrics.UPDATES.labels("text")._value.get() == before + 1
    assert GLOBAL_REGISTRY.get_sample_value("kindred_updates_total", {"kind": "text"}) is None
    value = metrics.REGISTRY.get_sample_value
    assert (value("kindred_crisis_detections_total", {"kind": "crisis_overdose"}) or 0) >= 1
    assert (value("kindred_telegram_429_total", {"method": "sendMessage"}) or 0) >= 1
    assert (value("kindred_telegram_send_retries_total", {"method": "sendMessage"}) or 0) >= 1
    assert (value("kindred_scheduler_lag_seconds_count") or 0) >= 1
    assert (value("kindred_escalation_time_to_claim_seconds_count") or 0) >= 1


async def test_queue_depth_time_to_claim_and_overdue_followups_come_from_the_database(
    fresh_engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker(fresh_engine).begin() as session:
        people = [unique_user() for _ in range(4)]
        for person in people:
            session.add(User(id=person, channel="test"))
        await session.flush()
        session.add(
            Escalation(
                user_id=people[0],
                priority=1,
                reason="crisis",
                status="open",
                created_at=now - timedelta(minutes=10),
            )
        )
        session.add(
            Escalation(
                user_id=people[1],
                priority=3,
                reason="peer",
                status="open",
                created_at=now - timedelta(minutes=2),
            )
        )
        session.add(
            Escalation(
                user_id=people[2],
                priority=1,
                reason="crisis",
                status="claimed",
                created_at=now - timedelta(hours=1),
                claimed_at=now - timedelta(hours=1) + timedelta(seconds=300),
            )
        )
        session.add(
            FollowUp(
                user_id=people[3],
                kind="craving_checkback",
                status="pending",
                due_at=now - timedelta(minutes=5),
                idempotency_key=unique_user(),
            )
        )
    body = await metrics.render(fresh_engine, EmbeddedInterpreter.for_language("en"))
    got = samples(body)
    assert got[("kindred_metrics_database_up", ())] == 1
    assert got[("kindred_escalations_open", (("priority", "1"),))] == 1
    assert got[("kindred_escalations_open", (("priority", "3"),))] == 1
    assert 590 <= got[("kindred_escalation_oldest_open_seconds", ())] <= 700
    assert got[("kindred_escalation_time_to_claim_24h_seconds", (("quantile", "0.5"),))] == 300
    assert got[("kindred_followups_overdue", ())] == 1
    assert 290 <= got[("kindred_followups_oldest_overdue_seconds", ())] <= 400
    assert got[("kindred_nlu_backend", (("backend", "EmbeddedInterpreter"),))] == 1


async def test_rasa_fallbacks_are_read_from_the_interpreters_stats() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    rasa = RasaInterpreter(
        "http://rasa.invalid:5005",
        "token",
        fallback=EmbeddedInterpreter.for_language("en"),
        failure_threshold=2,
        transport=httpx.MockTransport(refuse),
    )
    try:
        for text in ("hi", "i want a drink", "thanks"):
            await rasa.parse(text)
    finally:
        await rasa.aclose()
    got = samples(await metrics.render(None, rasa))
    assert got[("kindred_nlu_backend", (("backend", "rasa"),))] == 1
    assert got[("kindred_nlu_requests_total", ())] == 3
    assert got[("kindred_nlu_rasa_answers_total", ())] == 0
    fallbacks = sum(v for (name, _), v in got.items() if name == "kindred_nlu_fallbacks_total")
    assert fallbacks == 3
    assert got[("kindred_nlu_fallbacks_total", (("reason", "circuit_open"),))] == 1
    assert got[("kindred_nlu_breaker_opened_total", ())] == 1
    assert got[("kindred_nlu_circuit_open", ())] == 1


async def test_an_unreachable_database_is_reported_not_raised() -> None:
    from bot.db.engine import create_engine

    dead = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        got = samples(await metrics.render(dead))
    finally:
        await dead.dispose()
    assert got[("kindred_metrics_database_up", ())] == 0
