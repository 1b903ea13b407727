"""Onboarding, help and the honest fallback, as console conversations (on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import User
from bot.identity import Identity
from bot.service import KindredService
from tests.transcript import Conversation


async def stored_user(engine: AsyncEngine, identity: Identity, chat: Conversation) -> User:
    """The person's row, looked up by their pseudonym."""
    from bot.db.engine import sessionmaker

    async with sessionmaker(engine)() as session:
        user = await session.scalar(
            select(User).where(User.id == identity.pseudonym("console", chat.user))
        )
    assert user is not None
    return user


async def test_start_explains_what_kindred_is_and_asks_consent(service: KindredService) -> None:
    chat = Conversation(service)
    answer = await chat.say("/start")
    assert "automated assistant" in answer
    assert "not" in answer and "emergency service" in answer
    assert "never store your name" in answer
    assert chat.labels == [
        "Yes, save my check-ins",
        "No, don't save them",
        "What exactly is stored?",
    ]
    assert "[1] Yes, save my check-ins" in answer


async def test_yes_stores_consent_then_free_text_is_understood(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    assert "only those" in await chat.say("1")
    assert (await stored_user(engine, identity, chat)).consent_checkins is True
    answer = await chat.say("i really want a drink right now, its bad")
    assert "How strong is the craving" in answer


async def test_no_still_lets_the_person_use_the_bot(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    assert "completely fine" in await chat.press("No")
    assert (await stored_user(engine, identity, chat)).consent_checkins is False
    answer = await chat.say("where can i find an AA meeting")
    assert "Meetings can be a real lifeline" in answer


async def test_typing_yes_works_like_the_button(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.say("yes sure")
    assert (await stored_user(engine, identity, chat)).consent_checkins is True


async def test_what_is_stored_then_answer(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    answer = await chat.press("What exactly")
    assert "I never keep" in answer and "/delete" in answer
    assert "Yes, save my check-ins" in chat.labels


async def test_first_message_without_start_gets_the_introduction_then_an_answer(
    service: KindredService,
) -> None:
    chat = Conversation(service)
    answer = await chat.say("how do i find rehab near me")
    assert "automated assistant" in answer
    answer = await chat.press("Yes")
    assert "Looking for treatment is a big step" in answer
    assert "Which country" in answer
    answer = await chat.press("United Kingdom")
    assert "FRANK" in answer or "Drinkline" in answer


async def test_help_lists_what_the_bot_can_do(service: KindredService) -> None:
    chat = Conversation(service)
    answer = await chat.say("/help")
    assert "Here's what I can do" in answer
    assert "emergency number" in answer


async def test_intents_without_a_flow_get_an_honest_answer(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    answer = await chat.say("can you remind me tomorrow at 9 to check in")
    assert "tomorrow at 09:00" in answer


async def test_a_person_is_not_blocked_by_the_consent_question(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    answer = await chat.say("feeling really lonely tonight")
    assert "sorry it's so hard" in answer
