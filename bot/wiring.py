"""Builds the service from settings in one place (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db.engine import create_engine, sessionmaker, upgrade
from bot.identity import Identity
from bot.service import KindredService
from nlu.pipeline import NluPipeline, build_pipeline


@dataclass
class Runtime:
    """Everything a channel needs, and what must be closed at the end."""

    settings: Settings
    engine: AsyncEngine
    service: KindredService
    nlu: NluPipeline

    async def aclose(self) -> None:
        """Release connections."""
        closer = getattr(self.nlu.backend, "aclose", None)
        if closer is not None:
            await closer()
        await self.engine.dispose()


async def build_runtime(
    settings: Settings,
    *,
    migrate: bool | None = None,
    nlu: NluPipeline | None = None,
    language: str = "en",
) -> Runtime:
    """Engine, migrations (automatic for SQLite), identity and NLU, wired together."""
    if migrate if migrate is not None else settings.is_sqlite:
        await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    identity = Identity(settings.resolved_secret())
    if nlu is None:
        token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
        nlu = build_pipeline(language, "auto", settings.rasa_url, token)
    service = KindredService(sessionmaker(engine), identity, nlu, settings.default_language)
    return Runtime(settings, engine, service, nlu)
