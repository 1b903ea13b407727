"""Settings from the environment and `.env`, with the names DESIGN.md fixes."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_FILE = "kindred.sqlite3"
DEFAULT_SECRET_FILE = ".kindred_secret"


class Settings(BaseSettings):
    """Everything a deployment configures; nothing else reads the environment."""

    # env_ignore_empty: `NAME=` in .env or `${NAME:-}` in compose means "not set", not "".
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{DEFAULT_SQLITE_FILE}",
        validation_alias=AliasChoices("KINDRED_DATABASE_URL", "database_url"),
    )
    secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_SECRET_KEY", "secret_key")
    )
    secret_file: Path = Field(
        default=Path(DEFAULT_SECRET_FILE),
        validation_alias=AliasChoices("KINDRED_SECRET_FILE", "secret_file"),
    )
    telegram_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "telegram_bot_token")
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org",
        validation_alias=AliasChoices("TELEGRAM_API_BASE", "telegram_api_base"),
    )
    rasa_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RASA_URL", "rasa_url")
    )
    rasa_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RASA_TOKEN", "rasa_token")
    )
    # One Rasa model per language: "es=http://rasa-es:5005,ru=http://rasa-ru:5005". RASA_URL
    # serves the default language; a language without a server here uses the embedded NLU.
    rasa_urls: str | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_RASA_URLS", "rasa_urls")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    volunteer_chat_id: int | None = Field(
        default=None,
        validation_alias=AliasChoices("KINDRED_VOLUNTEER_CHAT_ID", "volunteer_chat_id"),
    )
    webhook_url: str | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_WEBHOOK_URL", "webhook_url")
    )
    http_port: int = Field(
        default=8080, validation_alias=AliasChoices("KINDRED_HTTP_PORT", "http_port")
    )
    # Telegram's X-Telegram-Bot-Api-Secret-Token; unset: derived from the deployment secret.
    webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_WEBHOOK_SECRET", "webhook_secret")
    )
    # Fernet keys, newest first, comma-separated; the key derived from secret_key stays last.
    encryption_keys: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_ENCRYPTION_KEYS", "encryption_keys")
    )
    # People silent for this many days are erased (bot.retention).
    retention_days: int = Field(
        default=365,
        ge=1,
        validation_alias=AliasChoices("KINDRED_RETENTION_DAYS", "retention_days"),
    )
    default_language: str = Field(
        default="en", validation_alias=AliasChoices("KINDRED_DEFAULT_LANGUAGE", "default_language")
    )
    default_country: str | None = Field(
        default=None, validation_alias=AliasChoices("KINDRED_DEFAULT_COUNTRY", "default_country")
    )
    # Concurrency for Telegram updates; each person's updates still run in order.
    max_concurrent_updates: int = Field(
        default=256, validation_alias=AliasChoices("KINDRED_MAX_CONCURRENT_UPDATES")
    )
    connection_pool_size: int = Field(
        default=64, validation_alias=AliasChoices("KINDRED_CONNECTION_POOL_SIZE")
    )

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite default (or another SQLite file)."""
        return self.database_url.startswith("sqlite")

    def resolved_secret(self) -> bytes:
        """The deployment secret; generated once into a 0600 file when none is configured."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        return load_or_create_secret_file(self.secret_file)


def load_or_create_secret_file(path: Path) -> bytes:
    """Read the generated secret, or create it with owner-only permissions."""
    if path.exists():
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value.encode()
    value = secrets.token_urlsafe(48)
    # O_EXCL + 0600 so the secret is never readable by others, even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)
    print(
        f"warning: generated a secret key in {path}; production must set KINDRED_SECRET_KEY",
        file=sys.stderr,
    )
    return value.encode()


def parse_rasa_urls(value: str | None) -> dict[str, str]:
    """KINDRED_RASA_URLS ("es=http://rasa-es:5005,ru=...") as language -> server URL."""
    urls: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        language, sep, url = part.partition("=")
        if not sep or not language.strip() or not url.strip():
            raise ValueError(f"KINDRED_RASA_URLS: expected language=url, got {part.strip()!r}")
        urls[language.strip().lower()] = url.strip()
    return urls
