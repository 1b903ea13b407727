"""Retention: people silent for longer than the retention period are erased, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.db.models import User
from bot.identity import Identity
from bot.privacy import rows_about
from bot.retention import DEFAULT_RETENTION_DAYS, erase_inactive
from bot.service import KindredService
from nlu.pipeline import NluPipeline
from tests import isolated_db
from tests.transcript import Conversation

# This module's own database: a retention sweep reaches everyone there is.
fresh_db_url = isolated_db.fresh_db_url
fresh_engine = isolated_db.fresh_engine


async def person_with_history(service: KindredService, identity: Identity) -> str:
    """Someone with a check-in, follow-ups and an escalation; returns their pseudonym."""
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("Yes")
    await chat.say("craving a drink 6/10")
    await chat.press("Done")
    await chat.press("In 30 min")
    await chat.say("i want to die")
    return identity.pseudonym("console", chat.user)


async def last_seen(engine: AsyncEngine, pseudonym: str, when: datetime) -> None:
    """Pretend the person last wrote at `when`."""
    async with sessionmaker(engine).begin() as session:
        await session.execute(update(User).where(User.id == pseudonym).values(last_seen_at=when))


async def test_inactive_people_are_erased_and_active_ones_kept(
    fresh_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    service = KindredService(sessionmaker(fresh_engine), identity, nlu_pipeline)
    gone = await person_with_history(service, identity)
    stays = await person_with_history(service, identity)
    now = datetime.now(UTC)
    await last_seen(fresh_engine, gone, now - timedelta(days=DEFAULT_RETENTION_DAYS + 1))
    await last_seen(fresh_engine, stays, now - timedelta(days=DEFAULT_RETENTION_DAYS - 1))
    sessions = sessionmaker(fresh_engine)
    async with sessions() as session:
        before = await rows_about(session, gone)
    assert before["checkins"] and before["followups"] and before["escalations"]

    report = await erase_inactive(sessions)

    assert report.people == 1
    assert report.rows["users"] == 1 and report.rows["checkins"] == before["checkins"]
    async with sessions() as session:
        after_gone = await rows_about(session, gone)
        after_stays = await rows_about(session, stays)
    assert set(after_gone.values()) == {0}, after_gone  # zero rows, table by table
    assert after_stays["users"] == 1 and after_stays["checkins"] == 1


async def test_the_period_is_configurable(
    fresh_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    service = KindredService(sessionmaker(fresh_engine), identity, nlu_pipeline)
    someone = await person_with_history(service, identity)
    await last_seen(fresh_engine, someone, datetime.now(UTC) - timedelta(days=40))
    sessions = sessionmaker(fresh_engine)

    await erase_inactive(sessions, days=60)
    async with sessions() as session:
        assert await session.get(User, someone) is not None  # 40 days is not 60
    report = await erase_inactive(sessions, days=30)

    assert report.people >= 1  # (others of this module's database may go too)
    async with sessions() as session:
        assert await session.get(User, someone) is None
    with pytest.raises(ValueError, match="at least one day"):
        await erase_inactive(sessions, days=0)
