"""The migrations build exactly the tables the models describe, on both databases."""

from __future__ import annotations

import importlib
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Base
from bot.keys import MODEL_MODULES


async def test_a_migrated_database_matches_the_models(engine: AsyncEngine) -> None:
    for module in MODEL_MODULES:  # the desk's and the programmes' tables too
        importlib.import_module(module)

    def differences(sync_conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(sync_conn), Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
