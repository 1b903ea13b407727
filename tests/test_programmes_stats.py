"""Programmes (deep-link codes) and `kindred stats`: aggregate figures, small cells suppressed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db.engine import sessionmaker
from bot.db.models import CheckIn, Escalation, User
from bot.identity import Identity
from bot.programmes import (
    create_programme,
    deep_link,
    join_programme,
    list_programmes,
    resolve_bot_username,
)
from bot.service import KindredService
from bot.stats import NO_PROGRAMME, ProgrammeFigures, programme_stats, render_table
from nlu.pipeline import NluPipeline
from tests import isolated_db
from tests.botapi_fake import FakeBotAPI
from tests.conftest import unique_user
from tests.transcript import Conversation

# This module's own database: the figures count everyone there is.
fresh_db_url = isolated_db.fresh_db_url
fresh_engine = isolated_db.fresh_engine

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def make_programme(engine: AsyncEngine, name: str, kind: str = "school") -> str:
    """Create a programme; returns its code."""
    async with sessionmaker(engine).begin() as session:
        return (await create_programme(session, name, kind)).code


async def add_people(
    engine: AsyncEngine,
    code: str | None,
    count: int,
    *,
    checking_in: int = 0,
    escalating: int = 0,
    claim_minutes: float = 12.0,
) -> None:
    """`count` people in the programme; some log cravings over 6 weeks, some escalate."""
    async with sessionmaker(engine).begin() as session:
        for n in range(count):
            user_id = f"{unique_user()}-{n}"
            session.add(User(id=user_id, channel="test", programme=code))
            await session.flush()
            if n < checking_in:
                # Cravings ease over six weeks: 8 in the first weeks, 3 in the last.
                for day, level in ((0, 8), (3, 7), (20, 6), (42, 3), (45, 3)):
                    session.add(
                        CheckIn(
                            user_id=user_id,
                            kind="craving",
                            craving_level=level,
                            created_at=NOW - timedelta(days=50 - day),
                        )
                    )
            if n < escalating:
                opened = NOW - timedelta(days=5)
                session.add(
                    Escalation(
                        user_id=user_id,
                        priority=1,
                        reason="crisis_suicide",
                        status="closed",
                        created_at=opened,
                        claimed_at=opened + timedelta(minutes=claim_minutes),
                    )
                )


def row(rows: list[ProgrammeFigures], code: str) -> ProgrammeFigures:
    """The row of one programme."""
    return next(r for r in rows if r.code == code)


async def test_deep_links_and_joining(fresh_engine: AsyncEngine) -> None:
    code = await make_programme(fresh_engine, "Northside Sixth Form", "school")
    assert re.fullmatch(r"p-[A-Za-z0-9_-]{12}", code)  # fits Telegram's start parameter
    assert deep_link("@KindredBot", code) == f"https://t.me/KindredBot?start={code}"
    async with sessionmaker(fresh_engine).begin() as session:
        person = User(id=unique_user(), channel="test")
        session.add(person)
        await session.flush()
        assert not await join_programme(session, person, "p-doesnotexist")
        assert not await join_programme(session, person, "'; DROP TABLE users; --")
        assert person.programme is None
        assert await join_programme(session, person, f" {code} ")
        assert person.programme == code
        names = [p.name for p in await list_programmes(session)]
    assert "Northside Sixth Form" in names


async def test_stats_report_figures_and_suppress_cells_under_ten(
    fresh_engine: AsyncEngine,
) -> None:
    big = await make_programme(fresh_engine, "Riverside Campus", "campus")
    small = await make_programme(fresh_engine, "Night Shift Crew", "workplace")
    mixed = await make_programme(fresh_engine, "Eastgate Community", "community")
    await add_people(fresh_engine, big, 14, checking_in=12, escalating=11)
    await add_people(fresh_engine, small, 9, checking_in=9, escalating=9)
    await add_people(fresh_engine, mixed, 15, checking_in=3, escalating=2)

    async with sessionmaker(fresh_engine)() as session:
        rows = await programme_stats(session, now=NOW)

    campus = row(rows, big)
    assert campus.people == 14
    assert campus.checkins == 12 * 5 and campus.people_checking_in == 12
    # Each person: median of their last 4 weeks (6, 3, 3 -> 3) - their first 4 weeks (8, 7, 6 -> 7).
    assert campus.craving_change == -4.0
    assert campus.escalations == 11 and campus.people_escalated == 11
    assert campus.median_minutes_to_claim == 12.0
    assert campus.craving_by_month["2026-10"] == 7.0  # 8, 7, 6 in October
    assert campus.craving_by_month["2026-11"] == 3.0

    # Nine people: nothing at all is shown about the programme, not even zeros.
    crew = row(rows, small)
    assert crew.people == "<10"
    assert crew.checkins is None and crew.escalations is None and not crew.craving_by_month

    # Fifteen people, but only 3 checking in and 2 escalating: those cells are suppressed.
    eastgate = row(rows, mixed)
    assert eastgate.people == 15
    assert eastgate.checkins == "<10" and eastgate.people_checking_in == "<10"
    assert eastgate.craving_change == "<10"
    assert eastgate.escalations == "<10" and eastgate.median_minutes_to_claim == "<10"
    assert set(eastgate.craving_by_month.values()) == {"<10"}

    table = render_table(rows)
    assert "Riverside Campus" in table and "<10" in table
    assert "median craving (0-10) by month" in table
    json.dumps([r.as_dict() for r in rows])  # the --json output serialises


async def test_people_without_a_programme_get_a_row_of_their_own(
    fresh_engine: AsyncEngine,
) -> None:
    await add_people(fresh_engine, None, 10, checking_in=10)
    async with sessionmaker(fresh_engine)() as session:
        rows = await programme_stats(session, now=NOW)
    none = row(rows, NO_PROGRAMME)
    assert none.name == "no programme"
    assert isinstance(none.people, int) and none.people >= 10


async def test_the_link_names_the_bot_telegram_says_it_is() -> None:
    async with FakeBotAPI(token="4242:TEST-programmes", username="kindred_pilot_bot") as api:
        settings = Settings(
            telegram_bot_token="4242:TEST-programmes", telegram_api_base=api.base_url
        )
        assert await resolve_bot_username(settings) == "kindred_pilot_bot"


async def test_a_deep_link_start_puts_the_person_in_the_programme(
    fresh_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    import flows.engine

    if not hasattr(flows.engine, "JoinProgramme"):
        pytest.skip("the /start payload is not wired to JoinProgramme yet (flows, repository)")
    code = await make_programme(fresh_engine, "Harbour Workers", "workplace")
    service = KindredService(sessionmaker(fresh_engine), identity, nlu_pipeline)
    joined, stranger = Conversation(service), Conversation(service)
    assert "automated assistant" in await joined.say(f"/start {code}")
    assert "automated assistant" in await stranger.say("/start p-forgedcode1")
    async with sessionmaker(fresh_engine)() as session:
        member = await session.get(User, identity.pseudonym("console", joined.user))
        other = await session.get(User, identity.pseudonym("console", stranger.user))
    assert member is not None and member.programme == code
    assert other is not None and other.programme is None
