"""Encryption key rotation: re-encrypt every encrypted column with the newest key.

The procedure a coordinator follows (docs/deploy.md):

1. `kindred keys generate` prints a new Fernet key; put it first in KINDRED_ENCRYPTION_KEYS
   (newest first, comma-separated) and restart every process: new values are now written with
   it, and old values still read with the older keys (MultiFernet).
2. `kindred keys rotate` re-encrypts every stored value with the newest key, in batches, one
   transaction per batch; safe to interrupt and run again (values already current are skipped).
3. Once it reports nothing left, drop the old key from KINDRED_ENCRYPTION_KEYS. The key
   derived from KINDRED_SECRET_KEY always remains as the last fallback.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

from cryptography.fernet import Fernet
from sqlalchemy import Column, Table, and_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Base
from bot.identity import Identity, UndecryptableValue

__all__ = [
    "EncryptedColumn",
    "RotationReport",
    "encrypted_columns",
    "generate_key",
    "parse_keys",
    "rotate_all",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Modules that declare tables on Base: a table is only in the metadata once its module is
# imported, and a rotation that missed one would leave values under the old key.
MODEL_MODULES = ("bot.db.models", "bot.desk.models", "bot.programmes")


class KeyConfigError(ValueError):
    """KINDRED_ENCRYPTION_KEYS holds something that is not a Fernet key."""


@dataclass(frozen=True)
class EncryptedColumn:
    """A column holding Fernet tokens, and the single-column primary key to page through it."""

    table: Table
    column: Column[str]
    key: Column[object]

    @property
    def name(self) -> str:
        """`table.column`, for reports."""
        return f"{self.table.name}.{self.column.name}"


@dataclass
class RotationReport:
    """What a rotation did, per column: re-encrypted, already current, unreadable."""

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)

    @property
    def total_rotated(self) -> int:
        """Values re-encrypted in this run."""
        return sum(self.rotated.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        """The report as plain data (printed as JSON by the CLI)."""
        return {"rotated": self.rotated, "current": self.current, "unreadable": self.unreadable}


def generate_key() -> str:
    """A new random Fernet key (URL-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str | None) -> tuple[str, ...]:
    """KINDRED_ENCRYPTION_KEYS (comma- or space-separated, newest first) as validated keys."""
    if not value:
        return ()
    keys = tuple(part for part in value.replace(",", " ").split() if part)
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            # Never echo the value: it is a key, or a typo of one.
            raise KeyConfigError(
                f"KINDRED_ENCRYPTION_KEYS entry {position} is not a Fernet key"
            ) from exc
    return keys


def _is_encrypted(column: Column[object]) -> bool:
    """Columns that hold Fernet tokens, by Kindred's naming convention or an explicit flag."""
    return bool(
        column.info.get("encrypted")
        or column.name == "chat_ref"
        or column.name.endswith("_encrypted")
    )


def encrypted_columns() -> list[EncryptedColumn]:
    """Every encrypted column of every table (chat refs, notes, desk transcripts, ...)."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    found = []
    for table in Base.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        for column in table.columns:
            if not _is_encrypted(column):
                continue
            if len(keys) != 1:
                raise RuntimeError(f"{table.name}: rotation pages by a single-column primary key")
            found.append(EncryptedColumn(table, column, keys[0]))
    return found


async def rotate_column(
    engine: AsyncEngine,
    identity: Identity,
    target: EncryptedColumn,
    report: RotationReport,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> None:
    """Re-encrypt one column's values with the newest key, batch by batch."""
    name = target.name
    report.rotated.setdefault(name, 0)
    report.current.setdefault(name, 0)
    report.unreadable.setdefault(name, 0)
    last: object | None = None
    while True:
        # Keyset paging and one short transaction per batch: the bot keeps running meanwhile.
        async with engine.begin() as conn:
            query = select(target.key, target.column).where(target.column.is_not(None))
            if last is not None:
                query = query.where(target.key > last)
            rows = (await conn.execute(query.order_by(target.key).limit(batch_size))).all()
            for key, token in rows:
                if identity.is_current(token):
                    report.current[name] += 1
                    continue
                try:
                    fresh = identity.rotate(token)
                except UndecryptableValue:
                    # Written with a key no longer configured: leave it, report it.
                    report.unreadable[name] += 1
                    continue
                # Compare-and-set: a value the bot rewrote meanwhile is newer than ours.
                result = await conn.execute(
                    update(target.table)
                    .where(and_(target.key == key, target.column == token))
                    .values({target.column.name: fresh})
                )
                report.rotated[name] += int(getattr(result, "rowcount", 0) or 0)
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


async def rotate_all(
    engine: AsyncEngine, identity: Identity, batch_size: int = DEFAULT_BATCH_SIZE
) -> RotationReport:
    """Re-encrypt every encrypted column with the identity's newest key."""
    report = RotationReport()
    for target in encrypted_columns():
        await rotate_column(engine, identity, target, report, batch_size)
        log.info(
            "key rotation: %s rotated=%d current=%d unreadable=%d",
            target.name,
            report.rotated[target.name],
            report.current[target.name],
            report.unreadable[target.name],
        )
    return report
