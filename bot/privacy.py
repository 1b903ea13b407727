"""Export and erasure of everything stored about one person."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AuditEntry, Base, CheckIn, ConversationState, Escalation, FollowUp, User

# Tables that hang off users.id and are erased by the cascade; listed to count and to export.
PERSON_TABLES = [t for t in Base.metadata.sorted_tables if "user_id" in t.c]
EXPORT_FILE_NAME = "kindred-my-data.json"


async def erase_person(session: AsyncSession, user_id: str) -> dict[str, int]:
    """Delete the person and every row about them; returns rows deleted per table."""
    # Forget loaded objects first, or the ORM would try to flush changes to deleted rows.
    session.expunge_all()
    counts: dict[str, int] = {}
    for table in reversed(PERSON_TABLES):
        result = await session.execute(delete(table).where(table.c.user_id == user_id))
        counts[table.name] = int(getattr(result, "rowcount", 0) or 0)
    audit = await session.execute(
        delete(AuditEntry).where(or_(AuditEntry.actor == user_id, AuditEntry.subject == user_id))
    )
    counts[AuditEntry.__tablename__] = int(getattr(audit, "rowcount", 0) or 0)
    users = await session.execute(delete(User).where(User.id == user_id))
    counts[User.__tablename__] = int(getattr(users, "rowcount", 0) or 0)
    return counts


async def rows_about(session: AsyncSession, user_id: str) -> dict[str, int]:
    """How many rows each table holds about the person (for tests and audits)."""
    counts = {}
    for table in [*PERSON_TABLES, Base.metadata.tables[User.__tablename__]]:
        column = table.c.user_id if "user_id" in table.c else table.c.id
        counts[table.name] = int(
            await session.scalar(select(func.count()).select_from(table).where(column == user_id))
            or 0
        )
    return counts


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


async def export_person(
    session: AsyncSession, user_id: str, decrypt: Callable[[str], str]
) -> dict[str, Any] | None:
    """Everything stored about the person, readable (notes decrypted); None if nothing."""
    user = await session.get(User, user_id)
    if user is None:
        return None
    profile = {
        "pseudonym": user.id,
        "channel": user.channel,
        "chat_id": "stored encrypted, used only to reply to you" if user.chat_ref else None,
        "language": user.language,
        "country": user.country,
        "timezone": user.timezone,
        "consent_to_store_checkins": user.consent_checkins,
        "consent_given_at": _plain(user.consent_at),
        "recovery_goal": user.recovery_goal,
        "recovery_start": _plain(user.recovery_start),
        "programme": user.programme,
        "active": user.active,
        "paused_until": _plain(user.paused_until),
        "first_contact": _plain(user.created_at),
        "last_seen": _plain(user.last_seen_at),
    }
    checkins = await session.scalars(
        select(CheckIn).where(CheckIn.user_id == user_id).order_by(CheckIn.created_at)
    )
    followups = await session.scalars(
        select(FollowUp).where(FollowUp.user_id == user_id).order_by(FollowUp.due_at)
    )
    escalations = await session.scalars(
        select(Escalation).where(Escalation.user_id == user_id).order_by(Escalation.created_at)
    )
    state = await session.get(ConversationState, user_id)
    return {
        "profile": profile,
        "checkins": [
            {
                "kind": c.kind,
                "at": _plain(c.created_at),
                "mood": c.mood,
                "craving_level": c.craving_level,
                "substance": c.substance,
                "triggers": c.triggers,
                "used": c.used,
                "outcome": c.outcome,
                "answers": c.answers,
                "note": decrypt(c.note_encrypted) if c.note_encrypted else None,
            }
            for c in checkins
        ],
        "scheduled_messages": [
            {"kind": f.kind, "due": _plain(f.due_at), "status": f.status} for f in followups
        ],
        "requests_for_a_person": [
            {
                "reason": e.reason,
                "status": e.status,
                "opened": _plain(e.created_at),
                "claimed": _plain(e.claimed_at),
                "closed": _plain(e.closed_at),
                "rating": e.rating,
            }
            for e in escalations
        ],
        "conversation": {"flow": state.flow, "step": state.step} if state else None,
    }


def export_file(data: dict[str, Any]) -> bytes:
    """The export as a readable JSON file."""
    return json.dumps(data, ensure_ascii=False, indent=2).encode()
