"""The per-update transaction in plain statements: same behaviour, fewer round trips."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import CheckIn, ConversationState, User
from bot.identity import Identity
from bot.inbound import Inbound
from bot.repository import USER_COLUMNS, claim_and_lock, save_outcome_rows, utcnow
from bot.service import KindredService
from flows import router
from flows.engine import Event, EventKind
from tests.conftest import unique_user

_update_ids = itertools.count(5_000_000)


def telegram(user: str, kind: EventKind, chat_id: str | None = "4242", **fields: Any) -> Inbound:
    """A Telegram update from `user` with a fresh update id unless one is given."""
    fields.setdefault("update_id", next(_update_ids))
    return Inbound(
        channel="telegram", external_user=user, chat_id=chat_id, kind=kind, bot_id=7, **fields
    )


def command(user: str, name: str, **fields: Any) -> Inbound:
    return telegram(user, EventKind.COMMAND, command=name, text=f"/{name}", **fields)


def press(user: str, payload: str, **fields: Any) -> Inbound:
    return telegram(user, EventKind.BUTTON, payload=payload, **fields)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine sends meanwhile."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def onboarded(service: KindredService) -> str:
    """A person who said yes to check-ins; their Telegram id."""
    user = unique_user()
    await service.handle(command(user, "start"))
    await service.handle(press(user, "onb:yes"))
    return user


def test_user_row_has_every_users_column() -> None:
    assert set(USER_COLUMNS) == {column.name for column in User.__table__.columns}


async def test_a_known_persons_update_is_claim_lock_and_changed_rows_only(
    service: KindredService, engine: AsyncEngine
) -> None:
    user = await onboarded(service)
    await service.handle(telegram(user, EventKind.TEXT, text="thanks"))
    with statements(engine) as sent:
        handled = await service.handle(telegram(user, EventKind.TEXT, text="thanks"))
    assert handled.replies
    # Nothing about the person changed: no write but the claim.
    assert not [s for s in sent if s.startswith("UPDATE")], sent
    assert len(sent) <= 2, sent  # the claim and the locked read (one statement on PostgreSQL)


async def test_a_redelivered_update_is_handled_once(service: KindredService) -> None:
    user = await onboarded(service)
    update_id = next(_update_ids)
    first = await service.handle(command(user, "checkin", update_id=update_id))
    repeat = await service.handle(command(user, "checkin", update_id=update_id))
    assert first.replies and not first.duplicate
    assert repeat.duplicate and repeat.replies == ()
    # The check-in is still at its first question: the repeat changed nothing.
    answer = await service.handle(press(user, "chk:mood:3"))
    assert "Any cravings today" in answer.replies[0].text


async def test_a_redelivered_first_contact_is_handled_once(service: KindredService) -> None:
    user = unique_user()
    first = await service.handle(command(user, "start", update_id=9_000_001))
    repeat = await service.handle(command(user, "start", update_id=9_000_001))
    assert first.replies and not first.duplicate
    assert repeat.duplicate and repeat.replies == ()


async def test_chat_is_filled_in_and_a_blocked_person_is_active_again(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    user = await onboarded(service)
    pseudonym = identity.pseudonym("telegram", user)
    async with engine.begin() as conn:
        await conn.execute(
            update(User).where(User.id == pseudonym).values(chat_ref=None, active=False)
        )
    await service.handle(telegram(user, EventKind.TEXT, text="hello", chat_id="31337"))
    async with engine.connect() as conn:
        chat_ref, active = (
            await conn.execute(select(User.chat_ref, User.active).where(User.id == pseudonym))
        ).one()
    assert active is True
    assert chat_ref is not None and identity.decrypt(chat_ref) == "31337"


async def test_a_waiting_update_reads_the_state_the_lock_holder_wrote(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    """Another worker holds the person's rows: the next update waits, then sees its writes."""
    user = await onboarded(service)
    pseudonym = identity.pseudonym("telegram", user)
    async with engine.connect() as holder:
        locked = await claim_and_lock(holder, 7, next(_update_ids), pseudonym)
        assert locked is not None and locked.user is not None and locked.state is not None
        checkin = Event(kind=EventKind.COMMAND, command="checkin", text="/checkin", now=utcnow())
        outcome = router.step(locked.state.as_state(locked.user), checkin)
        await save_outcome_rows(holder, locked.user, locked.state, outcome, identity.encrypt)
        waiting = asyncio.create_task(service.handle(press(user, "chk:mood:3")))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # blocked on the person's rows
        await holder.commit()
    handled = await asyncio.wait_for(waiting, 30)
    assert "Any cravings today" in handled.replies[0].text
    async with engine.connect() as conn:
        step = await conn.scalar(
            select(ConversationState.step).where(ConversationState.user_id == pseudonym)
        )
    assert step is not None and step != "mood"


async def checkins_of(engine: AsyncEngine, pseudonym: str) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count()).select_from(CheckIn).where(CheckIn.user_id == pseudonym)
            )
            or 0
        )


async def test_check_ins_are_recorded_only_with_consent(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    consenting = await onboarded(service)
    declining = unique_user()
    await service.handle(command(declining, "start"))
    await service.handle(press(declining, "onb:no"))
    for user in (consenting, declining):
        await service.handle(command(user, "checkin"))
        for payload in ("chk:mood:3", "chk:crv:2", "chk:used:no", "chk:note:skip"):
            await service.handle(press(user, payload))
    assert await checkins_of(engine, identity.pseudonym("telegram", consenting)) == 1
    assert await checkins_of(engine, identity.pseudonym("telegram", declining)) == 0
