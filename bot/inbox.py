"""Updates received and not yet handled, kept until handled so that a crash loses none.

Telegram forgets an update once the bot acknowledges it: the next getUpdates confirms the
offset, a webhook answers 200. Both happen before the update is handled (handling takes a
database transaction and a reply; updates of many people are in flight at once). A worker that
dies meanwhile (SIGKILL, out of memory, a power cut) would silently drop those messages, and one
of them may be somebody's "I took too much". So each update is written here, encrypted, before
it is acknowledged, and deleted once its handling has finished; a worker starting up replays
what is left. Replaying is safe: `processed_updates` lets each update be handled once.

What this does not cover: an update whose transaction committed but whose reply was not yet
sent when the worker died is replayed as a duplicate and gets no reply (the state has already
moved on). An update that kills the worker every time is dropped after MAX_ATTEMPTS replays.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import write_gate
from bot.db.models import InboxUpdate
from bot.followup_rules import as_utc
from bot.identity import UndecryptableValue
from bot.repository import utcnow

log = logging.getLogger(__name__)

INBOX = cast(Table, InboxUpdate.__table__)
MAX_ATTEMPTS = 3  # replays before an update that keeps killing the worker is given up
# Older than this, `processed_updates` may have forgotten it (housekeeping keeps 7 days), so a
# replay could answer twice; nobody waits a day for an answer to a chat message either.
MAX_AGE = timedelta(days=1)
_PG_INSERT = (
    "INSERT INTO inbox_updates (bot_id, update_id, payload) VALUES ($1, $2, $3) "
    "ON CONFLICT DO NOTHING"
)
FLUSH_SECONDS = 0.2  # handled updates are deleted in batches, at most this late
# Polling waits for the write before its next getUpdates: a database that hangs (rather than
# refusing) must not hold every later message back for the driver's connect timeout.
KEEP_TIMEOUT = 2.0
REPLAY_TIMEOUT = 10.0  # a worker starting against a database that hangs still starts polling


@dataclass
class InboxCounters:
    """What the inbox did (for tests, the benchmark and logs)."""

    kept: int = 0
    deleted: int = 0
    replayed: int = 0
    given_up: int = 0
    unavailable: int = 0


class Inbox:
    """The `inbox_updates` table: keep before acknowledging, forget once handled, replay."""

    def __init__(
        self,
        engine: AsyncEngine,
        encrypt: Callable[[str], str],
        decrypt: Callable[[str], str],
        *,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._engine = engine
        self._encrypt = encrypt
        self._decrypt = decrypt
        self._flush_seconds = flush_seconds
        self._handled: dict[int, list[int]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.counters = InboxCounters()

    async def keep(self, bot_id: int, updates: Sequence[Mapping[str, Any]]) -> None:
        """Write the raw updates (before Telegram is told they arrived).

        The database being down costs only this protection: the updates are still handled.
        """
        rows = [
            {
                "bot_id": bot_id,
                "update_id": raw["update_id"],
                "payload": self._encrypt(json.dumps(raw, separators=(",", ":"))),
            }
            for raw in updates
            if isinstance(raw, Mapping) and type(raw.get("update_id")) is int
        ]
        if not rows:
            return
        try:
            async with asyncio.timeout(KEEP_TIMEOUT):
                await self._insert(rows)
        except Exception as exc:
            self.counters.unavailable += 1
            log.warning(
                "inbox unavailable (%s): %d updates not kept", type(exc).__name__, len(rows)
            )
            return
        self.counters.kept += len(rows)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One statement; a redelivery of an update already kept keeps the first copy."""
        dialect = self._engine.dialect
        if dialect.driver != "asyncpg":
            insert = pg_insert if dialect.name == "postgresql" else sqlite_insert
            async with write_gate(self._engine), self._engine.begin() as conn:
                await conn.execute(insert(INBOX).on_conflict_do_nothing(), rows)
            return
        # Every update passes here before it is handled: asyncpg's own executemany, outside
        # a transaction block (one round trip, and atomic), costs half the CPU of SQLAlchemy's
        # BEGIN, INSERT, COMMIT (0.26 against 0.57 ms a batch, measured on PostgreSQL 15).
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = cast("asyncpg.Connection", raw.driver_connection)
            try:
                await driver.executemany(
                    _PG_INSERT,
                    [(row["bot_id"], row["update_id"], row["payload"]) for row in rows],
                )
            except BaseException:
                # SQLAlchemy did not see this statement fail: the pool must not hand the
                # connection out again (cut by a restart, or interrupted by the timeout).
                await conn.invalidate()
                raise

    def done(self, bot_id: int, update_id: int) -> None:
        """The update's handling finished: forget it soon (deletes are batched)."""
        self._handled.setdefault(bot_id, []).append(update_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        await self.flush()

    async def flush(self) -> None:
        """Delete the handled updates now (a failure leaves them to be replayed as duplicates)."""
        handled, self._handled = self._handled, {}
        if not handled:
            return
        try:
            async with write_gate(self._engine), self._engine.begin() as conn:
                for bot_id, update_ids in handled.items():
                    await conn.execute(
                        delete(INBOX).where(
                            INBOX.c.bot_id == bot_id, INBOX.c.update_id.in_(update_ids)
                        )
                    )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("inbox: handled updates not forgotten yet (%s)", type(exc).__name__)
            return
        self.counters.deleted += sum(len(ids) for ids in handled.values())

    async def aclose(self) -> None:
        """Forget what was handled before stopping."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def left_over(
        self, bot_id: int, received_before: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The raw updates a stopped worker left unhandled, oldest first, each counted as an
        attempt; those tried too often, too old or unreadable are deleted instead.

        `received_before` (webhook workers, which share the table): only updates older than
        that, and not replayed since, so updates other workers are handling now are left alone
        and workers sweeping together replay each update once.
        """
        now = utcnow()
        query = (
            select(INBOX.c.update_id, INBOX.c.payload, INBOX.c.attempts, INBOX.c.received_at)
            .where(INBOX.c.bot_id == bot_id)
            .order_by(INBOX.c.update_id)
        )
        if received_before is not None:
            query = query.where(
                INBOX.c.received_at < received_before,
                (INBOX.c.replayed_at.is_(None)) | (INBOX.c.replayed_at < received_before),
            )
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        try:
            async with (
                asyncio.timeout(REPLAY_TIMEOUT),
                write_gate(self._engine),
                self._engine.begin() as conn,
            ):
                rows = (await conn.execute(query)).all()
                replay, drop = self._sort_out(rows, now)
                if drop:
                    await conn.execute(
                        delete(INBOX).where(INBOX.c.bot_id == bot_id, INBOX.c.update_id.in_(drop))
                    )
                if replay:
                    await conn.execute(
                        update(INBOX)
                        .where(
                            INBOX.c.bot_id == bot_id,
                            INBOX.c.update_id.in_([raw["update_id"] for raw in replay]),
                        )
                        .values(attempts=INBOX.c.attempts + 1, replayed_at=now)
                    )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("inbox unavailable (%s): nothing replayed", type(exc).__name__)
            return []
        self.counters.replayed += len(replay)
        self.counters.given_up += len(drop)
        if replay or drop:
            log.warning(
                "inbox: replaying %d updates left unhandled, %d given up", len(replay), len(drop)
            )
        return replay

    def _sort_out(
        self, rows: Iterable[Any], now: datetime
    ) -> tuple[list[dict[str, Any]], list[int]]:
        replay: list[dict[str, Any]] = []
        drop: list[int] = []
        for update_id, payload, attempts, received_at in rows:
            if attempts >= MAX_ATTEMPTS or now - as_utc(received_at) > MAX_AGE:
                # Only the id is logged, never the content.
                log.error("inbox: gave up on update %d after %d attempts", update_id, attempts)
                drop.append(update_id)
                continue
            try:
                raw = json.loads(self._decrypt(payload))
            except (UndecryptableValue, ValueError):
                log.error("inbox: update %d cannot be read (retired key?)", update_id)
                drop.append(update_id)
                continue
            replay.append(raw)
        return replay, drop
