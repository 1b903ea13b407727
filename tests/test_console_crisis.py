"""A crisis message pre-empts everything: numbers and a human, never a cheerful menu."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.db.models import Escalation
from bot.identity import Identity
from bot.service import KindredService
from tests.transcript import Conversation


async def test_suicidal_message_in_the_middle_of_onboarding(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    answer = await chat.say("honestly i just want to end it all tonight")
    assert "glad you told me" in answer
    assert "emergency number" in answer
    assert "findahelpline.com" in answer
    assert "which country" in answer.lower()
    assert "/help" not in answer
    answer = await chat.press("United States")
    assert "911" in answer and "988" in answer
    async with sessionmaker(engine)() as session:
        escalation = await session.scalar(
            select(Escalation).where(Escalation.user_id == identity.pseudonym("console", chat.user))
        )
    assert escalation is not None and escalation.priority == 0


async def test_overdose_gets_emergency_steps_with_the_local_number(service: KindredService) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    await chat.say("where can i get naloxone")
    await chat.press("Canada")
    answer = await chat.say("my friend took too much and he's not breathing")
    assert "Call 911 now" in answer
    assert "Naloxone" in answer and "recovery position" in answer


async def test_pills_already_taken_with_suicidal_words_get_emergency_steps_first(
    service: KindredService,
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    answer = await chat.say("i took a whole bottle of pills, i want to die")
    assert answer.index("This is an emergency") < answer.index("glad you told me")


async def test_a_crisis_check_back_asks_gently_and_offers_help_again(
    service: KindredService, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.say("i don't want to be alive anymore")
    me = identity.pseudonym("console", chat.user)
    assert "How are you doing right now?" in await chat.followup(me, "crisis_checkback")
    answer = await chat.press("Still struggling")
    assert "emergency number" in answer and "findahelpline.com" in answer
    await chat.followup(me, "crisis_checkback")
    assert "really glad" in await chat.press("I'm okay")


async def test_not_wanting_to_call_is_met_with_staying_not_small_talk(
    service: KindredService,
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("Yes")
    await chat.say("nobody would miss me. tonight im taking all the pills i have")
    answer = await chat.say("no i dont want to call anyone")
    assert "no problem" not in answer.lower()
    assert "don't have to call anyone" in answer
    assert "emergency number" in answer  # the way out stays in sight
    answer = await chat.say("ok")
    assert "I'm here" in answer and "/help" not in answer
    answer = await chat.say("bye")
    assert "I'm here" in answer and "take care" not in answer.lower()
    # A request still gets what it asks for: the person is not trapped in the crisis step.
    answer = await chat.say("can i talk to a real person")
    assert "I'm here. Take your time" not in answer


async def test_an_unclear_answer_to_the_check_back_is_taken_as_still_struggling(
    service: KindredService, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.say("i don't want to be alive anymore")
    me = identity.pseudonym("console", chat.user)
    await chat.followup(me, "crisis_checkback")
    answer = await chat.say("meh")
    assert "emergency number" in answer and "findahelpline.com" in answer
    await chat.followup(me, "crisis_checkback")
    answer = await chat.say("no not really")
    assert "emergency number" in answer
    await chat.followup(me, "crisis_checkback")
    assert "really glad" in await chat.say("a bit better today actually, thanks")
