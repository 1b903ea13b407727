"""A database of their own for tests that act on every row (key rotation, retention, stats).

The session's shared databases hold other tests' people; a rotation or a retention sweep there
would change data those tests rely on. Bring the fixtures into the test module::

    fresh_db_url = isolated_db.fresh_db_url
    fresh_engine = isolated_db.fresh_engine
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import create_engine, upgrade_sync
from tests.conftest import POSTGRES_ADMIN_URL, _admin


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fresh_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly migrated database for one test module, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fresh') / 'kindred.sqlite3'}"
        upgrade_sync(url)
        yield url
        return
    if os.environ.get("KINDRED_SKIP_POSTGRES") == "1":
        pytest.skip("KINDRED_SKIP_POSTGRES=1: PostgreSQL tests deliberately not run")
    name = f"kindred_fresh_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade_sync(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def fresh_engine(fresh_db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the module's own database."""
    engine = create_engine(fresh_db_url)
    yield engine
    await engine.dispose()
