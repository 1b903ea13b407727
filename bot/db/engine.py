"""Engine, sessions and migrations for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys on (for cascading erasure) and WAL."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
    else:
        # Connections are held only for a transaction's few statements (never across a
        # Telegram call), so 20 keep the database busy; connections beyond the pool are
        # closed on return, and reconnecting under load costs more than keeping them.
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 10)
    engine = create_async_engine(url, **kwargs)
    if not url.startswith("sqlite") and not kwargs.get("pool_pre_ping"):

        @event.listens_for(engine.sync_engine, "checkout")
        def _closed_is_gone(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            # pool_pre_ping costs three round trips per checkout with asyncpg (BEGIN, ping,
            # ROLLBACK: about a third of an update's statements). A connection the server
            # closed (a restart, pg_terminate_backend) is already marked closed by asyncpg:
            # the pool then replaces it with a fresh one before anyone uses it.
            driver = record.driver_connection
            if driver is not None and getattr(driver, "is_closed", lambda: False)():
                raise DisconnectionError("connection closed by the server")

    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


_WRITE_GATES: WeakKeyDictionary[Engine, asyncio.Lock] = WeakKeyDictionary()


def write_gate(engine: AsyncEngine | None) -> AbstractAsyncContextManager[Any]:
    """Where this process's writers to a SQLite database take turns (PostgreSQL: no wait).

    SQLite has one writer at a time. Writers that collide wait in SQLite's busy handler, which
    sleeps 1, 2, 5, 10 ... up to 100 ms between retries: under load the updates' transactions
    and the inbox's writes queued there for hundreds of milliseconds. Queued here, each starts
    the moment the previous one ends.
    """
    if engine is None or engine.dialect.name != "sqlite":
        return nullcontext()
    return _WRITE_GATES.setdefault(engine.sync_engine, asyncio.Lock())


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """One session per operation; objects stay usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """Alembic's config pointing at the packaged migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Run the migrations up to `revision` (blocking; env.py runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations from async code, in a worker thread with its own loop."""
    await asyncio.to_thread(upgrade_sync, url, revision)
