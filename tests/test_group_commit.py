"""Group commit on PostgreSQL: people writing at the same moment share a transaction.

Each test compares what people get with what they would get alone (a service without group
commit on the same database), so sharing a transaction can change nothing a person sees.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import create_engine, sessionmaker
from bot.db.models import CheckIn, ConversationState, ProcessedUpdate
from bot.identity import Identity
from bot.inbound import Inbound
from bot.service import Handled, KindredService
from flows import router
from flows.engine import EventKind
from nlu.pipeline import NluPipeline
from tests.conftest import unique_user

pytestmark = pytest.mark.postgres

_update_ids = itertools.count(70_000_000)
BOT = 11

# A night's conversation: consent, a daily check-in with its buttons, small talk.
CONVERSATION: tuple[tuple[EventKind, str], ...] = (
    (EventKind.COMMAND, "start"),
    (EventKind.BUTTON, "onb:yes"),
    (EventKind.COMMAND, "checkin"),
    (EventKind.BUTTON, "chk:mood:3"),
    (EventKind.BUTTON, "chk:crv:2"),
    (EventKind.BUTTON, "chk:used:no"),
    (EventKind.BUTTON, "chk:note:skip"),
    (EventKind.TEXT, "thanks, that helped"),
    (EventKind.TEXT, "i really want a drink right now"),
)


def said(user: str, kind: EventKind, what: str, update_id: int | None = None) -> Inbound:
    """One Telegram update from `user`: a command, a button press or free text."""
    fields: dict[str, Any] = {"text": what}
    if kind is EventKind.COMMAND:
        fields = {"command": what, "text": f"/{what}"}
    elif kind is EventKind.BUTTON:
        fields = {"payload": what, "text": ""}
    return Inbound(
        channel="telegram",
        external_user=user,
        chat_id=str(abs(hash(user)) % 10**9),
        kind=kind,
        bot_id=BOT,
        update_id=next(_update_ids) if update_id is None else update_id,
        language_code="en",
        **fields,
    )


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


def kindred(engine: AsyncEngine, identity: Identity, nlu: NluPipeline, batch: bool) -> Any:
    return KindredService(sessionmaker(engine), identity, nlu, group_commit=batch)


def texts(handled: Handled) -> list[str]:
    return [reply.text for reply in handled.replies]


async def converse(service: KindredService, user: str) -> list[list[str]]:
    """One person's whole conversation, each message after the previous reply."""
    return [texts(await service.handle(said(user, kind, what))) for kind, what in CONVERSATION]


async def test_people_writing_at_once_share_transactions_and_each_get_their_own_replies(
    pg_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    alone = kindred(pg_engine, identity, nlu_pipeline, batch=False)
    expected = await converse(alone, unique_user())
    service = kindred(pg_engine, identity, nlu_pipeline, batch=True)
    people = [unique_user() for _ in range(30)]

    transcripts = await asyncio.gather(*(converse(service, person) for person in people))

    assert all(transcript == expected for transcript in transcripts)
    group = service.group_commit
    assert group is not None and group.fallbacks == 0
    updates = len(people) * len(CONVERSATION)
    assert group.batched_updates == updates
    assert group.batches < updates / 3  # they really shared transactions
    # Each person's check-in was recorded once, in their own name.
    async with pg_engine.connect() as conn:
        for person in people:
            pseudonym = identity.pseudonym("telegram", person)
            count = await conn.scalar(
                select(func.count()).select_from(CheckIn).where(CheckIn.user_id == pseudonym)
            )
            assert count == 1


async def test_one_persons_fault_does_not_cost_the_others_their_reply(
    pg_engine: AsyncEngine,
    identity: Identity,
    nlu_pipeline: NluPipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone = kindred(pg_engine, identity, nlu_pipeline, batch=False)
    reference = unique_user()
    for kind, what in CONVERSATION[:2]:
        await alone.handle(said(reference, kind, what))
    expected = texts(await alone.handle(said(reference, EventKind.COMMAND, "checkin")))
    service = kindred(pg_engine, identity, nlu_pipeline, batch=True)
    people = [unique_user() for _ in range(8)]
    for person in people:
        for kind, what in CONVERSATION[:2]:
            await service.handle(said(person, kind, what))
    unlucky = identity.pseudonym("telegram", people[-1])
    async with pg_engine.begin() as conn:
        await conn.execute(
            ConversationState.__table__.update()
            .where(ConversationState.user_id == unlucky)
            .values(data={"boom": True})
        )
    real_step = router.step

    def step(state: Any, event: Any) -> Any:
        """The flows with a bug that only this one person's state triggers."""
        if event.command == "checkin" and state.data.get("boom"):
            raise RuntimeError("a flow bug")
        return real_step(state, event)

    monkeypatch.setattr(router, "step", step)
    doomed = said(people[-1], EventKind.COMMAND, "checkin")

    results = await asyncio.gather(
        *(service.handle(said(person, EventKind.COMMAND, "checkin")) for person in people[:-1]),
        service.handle(doomed),
        return_exceptions=True,
    )

    assert isinstance(results[-1], RuntimeError)  # the bug surfaces for that person alone
    assert all(isinstance(h, Handled) and texts(h) == expected for h in results[:-1])
    group = service.group_commit
    assert group is not None and group.fallbacks > 1  # a shared batch was undone, then redone
    # Nothing of the undone batch stayed for the unlucky person: unclaimed, state untouched.
    async with pg_engine.connect() as conn:
        claims = await conn.scalar(
            select(func.count())
            .select_from(ProcessedUpdate)
            .where(ProcessedUpdate.bot_id == BOT, ProcessedUpdate.update_id == doomed.update_id)
        )
        data = await conn.scalar(
            select(ConversationState.data).where(ConversationState.user_id == unlucky)
        )
    assert claims == 0
    assert data == {"boom": True}


async def test_a_redelivered_update_among_others_is_handled_once(
    pg_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    service = kindred(pg_engine, identity, nlu_pipeline, batch=True)
    people = [unique_user() for _ in range(6)]
    for person in people:
        await service.handle(said(person, EventKind.COMMAND, "start"))
    twice = next(_update_ids)

    results = await asyncio.gather(
        *(service.handle(said(person, EventKind.BUTTON, "onb:yes")) for person in people[1:]),
        service.handle(said(people[0], EventKind.BUTTON, "onb:yes", update_id=twice)),
        service.handle(said(people[0], EventKind.BUTTON, "onb:yes", update_id=twice)),
    )

    repeated = results[-2:]
    assert sorted(handled.duplicate for handled in repeated) == [False, True]
    assert all(handled.replies and not handled.duplicate for handled in results[:-2])
    async with pg_engine.connect() as conn:
        claims = await conn.scalar(
            select(func.count())
            .select_from(ProcessedUpdate)
            .where(ProcessedUpdate.bot_id == BOT, ProcessedUpdate.update_id == twice)
        )
    assert claims == 1


async def test_first_contacts_at_once_are_welcomed_in_shared_transactions(
    pg_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    alone = kindred(pg_engine, identity, nlu_pipeline, batch=False)
    welcome = texts(await alone.handle(said(unique_user(), EventKind.COMMAND, "start")))
    service = kindred(pg_engine, identity, nlu_pipeline, batch=True)
    people = [unique_user() for _ in range(20)]

    results = await asyncio.gather(
        *(service.handle(said(person, EventKind.COMMAND, "start")) for person in people)
    )

    assert all(texts(handled) == welcome for handled in results)
    group = service.group_commit
    assert group is not None and group.fallbacks == 0 and group.batches < len(people)
    # Their rows exist: the next message finds them where /start left them.
    reference = unique_user()
    await alone.handle(said(reference, EventKind.COMMAND, "start"))
    expected = texts(await alone.handle(said(reference, EventKind.BUTTON, "onb:yes")))
    answers = await asyncio.gather(
        *(service.handle(said(person, EventKind.BUTTON, "onb:yes")) for person in people)
    )
    assert all(texts(handled) == expected for handled in answers)


async def test_two_processes_batching_the_same_people_neither_deadlock_nor_lose_updates(
    postgres_url: str, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    """Two bot processes (two engines) each take one update of every person, all at once."""
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        first, second = (kindred(e, identity, nlu_pipeline, batch=True) for e in engines)
        people = [unique_user() for _ in range(24)]
        for person in people:
            await first.handle(said(person, EventKind.COMMAND, "start"))
            await first.handle(said(person, EventKind.BUTTON, "onb:yes"))

        results = await asyncio.gather(
            *(first.handle(said(person, EventKind.TEXT, "hello")) for person in people),
            *(second.handle(said(person, EventKind.COMMAND, "help")) for person in people),
        )

        assert all(handled.replies and not handled.duplicate for handled in results)
        for service in (first, second):
            assert service.group_commit is not None and service.group_commit.fallbacks == 0
    finally:
        for engine in engines:
            await engine.dispose()


async def test_an_erasure_in_a_shared_transaction_takes_only_that_person(
    pg_engine: AsyncEngine, identity: Identity, nlu_pipeline: NluPipeline
) -> None:
    service = kindred(pg_engine, identity, nlu_pipeline, batch=True)
    people = [unique_user() for _ in range(10)]
    leaving = people[-1]
    for person in people:
        for kind, what in CONVERSATION[:7]:  # consent and a whole daily check-in
            await service.handle(said(person, kind, what))
    await service.handle(said(leaving, EventKind.COMMAND, "delete"))

    await asyncio.gather(
        *(service.handle(said(person, EventKind.COMMAND, "checkin")) for person in people[:-1]),
        service.handle(said(leaving, EventKind.BUTTON, "prv:erase")),
    )
    answers = await asyncio.gather(
        *(service.handle(said(person, EventKind.BUTTON, "chk:mood:4")) for person in people[:-1])
    )

    assert all("Any cravings today" in handled.replies[0].text for handled in answers)
    group = service.group_commit
    assert group is not None and group.fallbacks == 0
    async with pg_engine.connect() as conn:
        for person in people:
            pseudonym = identity.pseudonym("telegram", person)
            kept = await conn.scalar(
                select(func.count()).select_from(CheckIn).where(CheckIn.user_id == pseudonym)
            )
            state = await conn.scalar(
                select(func.count())
                .select_from(ConversationState)
                .where(ConversationState.user_id == pseudonym)
            )
            assert (kept, state) == ((0, 0) if person == leaving else (1, 1))
