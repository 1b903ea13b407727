"""Builds the service from settings in one place (no module-level globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, parse_rasa_urls
from bot.db.engine import create_engine, sessionmaker, upgrade
from bot.identity import Identity
from bot.keys import parse_keys
from bot.service import KindredService
from nlu.pipeline import NluPipeline, build_pipeline


@dataclass
class Runtime:
    """Everything a channel needs, and what must be closed at the end."""

    settings: Settings
    engine: AsyncEngine
    service: KindredService
    nlu: NluPipeline
    identity: Identity

    async def aclose(self) -> None:
        """Release connections."""
        closer = getattr(self.nlu.backend, "aclose", None)
        if closer is not None:
            await closer()
        await self.engine.dispose()


def embedded_pipeline_for(language: str) -> NluPipeline | None:
    """The embedded pipeline of a language we have a model for (Rasa serves the default)."""
    from nlu.embedded import available_languages

    return build_pipeline(language, "embedded") if language in available_languages() else None


def pipelines_for(settings: Settings) -> Callable[[str], NluPipeline | None]:
    """Each other language's pipeline: its own Rasa server when KINDRED_RASA_URLS names one
    (with the embedded model as its fallback), else the embedded model alone."""
    from nlu.embedded import available_languages

    urls = parse_rasa_urls(settings.rasa_urls)
    token = settings.rasa_token.get_secret_value() if settings.rasa_token else None

    def pipeline(language: str) -> NluPipeline | None:
        if language not in available_languages():
            return None
        if language in urls:
            return build_pipeline(language, "rasa", urls[language], token)
        return build_pipeline(language, "embedded")

    return pipeline


def build_identity(settings: Settings) -> Identity:
    """Pseudonyms and encryption from the deployment secret and KINDRED_ENCRYPTION_KEYS."""
    keys = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    return Identity(settings.resolved_secret(), encryption_keys=parse_keys(keys))


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
    identity = build_identity(settings)
    if nlu is None:
        token = settings.rasa_token.get_secret_value() if settings.rasa_token else None
        # RASA_URL holds the default language's model; another language needs its own server.
        default_url = settings.rasa_url if language == settings.default_language else None
        url = parse_rasa_urls(settings.rasa_urls).get(language, default_url)
        nlu = build_pipeline(language, "auto", url, token)
    service = KindredService(
        sessionmaker(engine),
        identity,
        nlu,
        settings.default_language,
        desk=settings.volunteer_chat_id is not None,
        nlu_for_language=pipelines_for(settings),
    )
    return Runtime(settings, engine, service, nlu, identity)
