"""Prometheus metrics on a registry of Kindred's own, and the small functions that feed them.

Two kinds of figures:

- events this process saw, counted as they happen (updates, latency, crisis detections,
  Telegram 429s and retries, scheduler lag, time to claim): call the functions below;
- state that lives in the database or in the NLU client (escalation queue, overdue follow-ups,
  Rasa fallbacks): read at scrape time by `render`, so every worker reports the same truth.

No label ever carries an identifier: labels are update kinds, intents, methods and reasons.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Update

from bot.db.models import Escalation, FollowUp

__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "crisis_detected",
    "escalation_claimed",
    "handler_failed",
    "observe_update",
    "render",
    "scheduler_lag",
    "send_retry",
    "telegram_429",
    "update_kind",
]

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Kindred's own registry: tests and libraries never see the global default registry change.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Scheduler lag and time to claim are minutes-to-hours affairs, not milliseconds.
_LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
_CLAIM_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)

UPDATES = Counter(
    "kindred_updates", "Telegram updates handled, by kind", ["kind"], registry=REGISTRY
)
UPDATE_SECONDS = Histogram(
    "kindred_update_handling_seconds",
    "Time from accepting an update to its replies being sent",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
HANDLER_FAILURES = Counter(
    "kindred_update_failures", "Updates whose handler raised, by kind", ["kind"], registry=REGISTRY
)
CRISIS = Counter(
    "kindred_crisis_detections",
    "Messages the NLU or the safety net read as a crisis, by intent",
    ["kind"],
    registry=REGISTRY,
)
TELEGRAM_429 = Counter(
    "kindred_telegram_429",
    "Telegram flood-control answers (HTTP 429), by Bot API method",
    ["method"],
    registry=REGISTRY,
)
SEND_RETRIES = Counter(
    "kindred_telegram_send_retries",
    "Bot API calls retried after a 429 or a transient failure, by method",
    ["method"],
    registry=REGISTRY,
)
SCHEDULER_LAG = Histogram(
    "kindred_scheduler_lag_seconds",
    "How late a follow-up was delivered after it came due",
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_CLAIM = Histogram(
    "kindred_escalation_time_to_claim_seconds",
    "Seconds from a request for a person to a volunteer claiming it",
    buckets=_CLAIM_BUCKETS,
    registry=REGISTRY,
)
WEBHOOK_REJECTED = Counter(
    "kindred_webhook_rejected",
    "Webhook requests refused (wrong secret token or a body that is not an update), by reason",
    ["reason"],
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "kindred_updates_in_flight",
    "Updates accepted by this worker and not yet finished",
    registry=REGISTRY,
)


def update_kind(update: Update) -> str:
    """A small fixed vocabulary for metrics labels: text, command, button, media or the type."""
    if update.callback_query is not None:
        return "button"
    message = update.message
    if message is not None:
        if message.text is not None:
            return "command" if message.text.startswith("/") else "text"
        return "media"
    for name in ("edited_message", "my_chat_member", "chat_member", "message_reaction"):
        if getattr(update, name, None) is not None:
            return name
    return "other"


def observe_update(kind: str, seconds: float) -> None:
    """One update handled: count it and record how long it took."""
    UPDATES.labels(kind).inc()
    UPDATE_SECONDS.labels(kind).observe(max(seconds, 0.0))


def handler_failed(kind: str) -> None:
    """An update's handler raised (the person may have had no answer)."""
    HANDLER_FAILURES.labels(kind).inc()


def crisis_detected(kind: str) -> None:
    """A message was read as a crisis (`crisis_suicide`, `crisis_overdose`)."""
    CRISIS.labels(kind).inc()


def telegram_429(method: str) -> None:
    """Telegram answered 429 Too Many Requests to a Bot API call."""
    TELEGRAM_429.labels(method).inc()


def send_retry(method: str) -> None:
    """A Bot API call is being tried again."""
    SEND_RETRIES.labels(method).inc()


def scheduler_lag(seconds: float) -> None:
    """A follow-up went out `seconds` after it came due."""
    SCHEDULER_LAG.observe(max(seconds, 0.0))


def escalation_claimed(seconds: float) -> None:
    """A volunteer claimed a request `seconds` after it was opened."""
    TIME_TO_CLAIM.observe(max(seconds, 0.0))


def webhook_rejected(reason: str) -> None:
    """A webhook request was refused (`secret`, `body`)."""
    WEBHOOK_REJECTED.labels(reason).inc()


# ---------------------------------------------------------------------------------------------
# Scrape-time figures: read from the database and the NLU client when /metrics is asked.
# ---------------------------------------------------------------------------------------------


class _Snapshot(Collector):
    """A collector over metric families computed just before the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        """The precomputed families."""
        return self._families


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Kindred stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def database_families(engine: AsyncEngine, now: datetime | None = None) -> list[Metric]:
    """Escalation queue and follow-up backlog, as the database has them now."""
    now = now or datetime.now(UTC)
    up = GaugeMetricFamily("kindred_metrics_database_up", "Whether the metrics query succeeded")
    try:
        async with engine.connect() as conn:
            open_rows = (
                await conn.execute(
                    select(Escalation.priority, func.count(), func.min(Escalation.created_at))
                    .where(Escalation.status == "open")
                    .group_by(Escalation.priority)
                )
            ).all()
            claimed = (
                await conn.execute(
                    select(Escalation.created_at, Escalation.claimed_at).where(
                        Escalation.claimed_at.is_not(None),
                        Escalation.claimed_at >= now - timedelta(hours=24),
                    )
                )
            ).all()
            # A minute of grace: a follow-up due this instant is not yet late.
            overdue = (
                await conn.execute(
                    select(func.count(), func.min(FollowUp.due_at)).where(
                        FollowUp.status == "pending",
                        FollowUp.due_at < now - timedelta(minutes=1),
                    )
                )
            ).one()
    except (SQLAlchemyError, OSError) as exc:
        log.warning("metrics: database unavailable (%s)", type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    queue = GaugeMetricFamily(
        "kindred_escalations_open", "Open requests for a person, by priority", labels=["priority"]
    )
    oldest = GaugeMetricFamily(
        "kindred_escalation_oldest_open_seconds", "Age of the oldest open request for a person"
    )
    oldest_age = 0.0
    for priority, count, first in open_rows:
        queue.add_metric([str(priority)], count)
        if first is not None:
            oldest_age = max(oldest_age, (now - _aware(first)).total_seconds())
    oldest.add_metric([], oldest_age)
    waits = [
        (_aware(claimed_at) - _aware(created)).total_seconds()
        for created, claimed_at in claimed
        if claimed_at is not None
    ]
    recent = GaugeMetricFamily(
        "kindred_escalation_time_to_claim_24h_seconds",
        "Time to claim over the requests claimed in the last 24 hours",
        labels=["quantile"],
    )
    if waits:
        recent.add_metric(["0.5"], statistics.median(waits))
        recent.add_metric(["0.9"], statistics.quantiles(waits, n=10)[-1] if len(waits) > 1 else 0)
        recent.add_metric(["1"], max(waits))
    overdue_count, first_due = overdue
    backlog = GaugeMetricFamily(
        "kindred_followups_overdue", "Pending follow-ups more than a minute past due"
    )
    backlog.add_metric([], overdue_count or 0)
    lag = GaugeMetricFamily(
        "kindred_followups_oldest_overdue_seconds",
        "How far past due the oldest pending follow-up is (scheduler lag as the database sees it)",
    )
    lag.add_metric([], (now - _aware(first_due)).total_seconds() if first_due else 0.0)
    return [up, queue, oldest, recent, backlog, lag]


def nlu_families(backend: object) -> list[Metric]:
    """Rasa calls, answers and fallbacks by reason, read from the RasaInterpreter's stats."""
    stats = getattr(backend, "stats", None)
    if stats is None:
        # The embedded interpreter alone: every parse is local, nothing can fall back.
        name = GaugeMetricFamily("kindred_nlu_backend", "NLU backend in use", labels=["backend"])
        name.add_metric([type(backend).__name__], 1)
        return [name]
    counts: dict[str, int] = stats.as_dict()
    name = GaugeMetricFamily("kindred_nlu_backend", "NLU backend in use", labels=["backend"])
    name.add_metric(["rasa"], 1)
    requests = CounterMetricFamily("kindred_nlu_requests", "Messages sent to Rasa")
    requests.add_metric([], counts.get("requests", 0))
    answered = CounterMetricFamily("kindred_nlu_rasa_answers", "Messages Rasa answered")
    answered.add_metric([], counts.get("rasa_ok", 0))
    fallbacks = CounterMetricFamily(
        "kindred_nlu_fallbacks",
        "Messages answered by the embedded interpreter because Rasa could not, by reason",
        labels=["reason"],
    )
    for reason in ("timeout", "unavailable", "bad_response", "circuit_open", "error"):
        fallbacks.add_metric([reason], counts.get(reason, 0))
    trips = CounterMetricFamily("kindred_nlu_breaker_opened", "Times the Rasa circuit opened")
    trips.add_metric([], counts.get("breaker_opened", 0))
    breaker = getattr(backend, "breaker", None)
    state = GaugeMetricFamily(
        "kindred_nlu_circuit_open", "1 while the Rasa circuit breaker is open (not closed)"
    )
    state.add_metric([], 0 if breaker is None or breaker.state == "closed" else 1)
    return [name, requests, answered, fallbacks, trips, state]


async def render(engine: AsyncEngine | None = None, nlu_backend: object | None = None) -> bytes:
    """The exposition text: this process's counters, then the scrape-time figures."""
    started = time.perf_counter()
    families: list[Metric] = []
    if engine is not None:
        families += await database_families(engine)
    if nlu_backend is not None:
        families += nlu_families(nlu_backend)
    took = GaugeMetricFamily(
        "kindred_metrics_scrape_seconds", "Time spent reading scrape-time figures"
    )
    took.add_metric([], time.perf_counter() - started)
    # A throwaway registry per scrape: nothing per-runtime is ever registered globally.
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot([*families, took]))
    return generate_latest(REGISTRY) + generate_latest(snapshot)
