"""The volunteer desk's own settings (environment or `.env`, like bot.config.Settings)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeskSettings(BaseSettings):
    """How the desk pings, waits and keeps (or does not keep) transcripts."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Unclaimed this long: ping the desk again and tell the person the expected wait.
    reping_minutes: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("KINDRED_DESK_REPING_MINUTES", "reping_minutes"),
    )
    max_pings: int = Field(
        default=3, ge=0, validation_alias=AliasChoices("KINDRED_DESK_MAX_PINGS", "max_pings")
    )
    # How often the desk looks for new, re-prioritised and unclaimed requests.
    sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("KINDRED_DESK_SWEEP_SECONDS", "sweep_seconds"),
    )
    # The wait told to a person before the desk has claim times of its own to go on.
    default_wait_minutes: int = Field(
        default=10,
        ge=1,
        validation_alias=AliasChoices("KINDRED_DESK_DEFAULT_WAIT_MINUTES", "default_wait_minutes"),
    )
    # Transcripts are off by default; when on, lines are encrypted and purged after retention.
    store_transcripts: bool = Field(
        default=False,
        validation_alias=AliasChoices("KINDRED_DESK_TRANSCRIPTS", "store_transcripts"),
    )
    transcript_retention_days: int = Field(
        default=30,
        ge=1,
        validation_alias=AliasChoices(
            "KINDRED_DESK_TRANSCRIPT_RETENTION_DAYS", "transcript_retention_days"
        ),
    )
