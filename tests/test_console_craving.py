"""Craving check-in and lapse, as console conversations (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.db.models import CheckIn, Escalation, FollowUp
from bot.identity import Identity
from bot.service import KindredService
from tests.transcript import Conversation


async def consenting(service: KindredService) -> Conversation:
    """A person who has said yes to storing check-ins."""
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("Yes")
    return chat


async def rows(engine: AsyncEngine, model: type, pseudonym: str) -> list:  # type: ignore[type-arg]
    """All rows of a table for one person."""
    async with sessionmaker(engine)() as session:
        result = await session.scalars(select(model).where(model.user_id == pseudonym))  # type: ignore[attr-defined]
        return list(result)


async def test_craving_check_in_all_the_way_to_a_check_back(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = await consenting(service)
    answer = await chat.say("i'm craving so bad right now")
    assert "0 (none) to 10" in answer
    answer = await chat.say("7")
    assert "What is the craving for?" in answer
    await chat.press("Alcohol")
    answer = await chat.press("Lonely")
    assert "✓ Lonely" in chat.labels
    await chat.press("Tired")
    answer = await chat.press("Done")
    assert "lonely, tired" in answer
    assert "basics first" in answer
    assert "Lonely: message someone" in answer
    answer = await chat.press("Another idea")
    assert "urge" in answer.lower()
    answer = await chat.press("Check on me in 15")
    assert "check back in 15 minutes" in answer

    me = identity.pseudonym("console", chat.user)
    [checkin] = await rows(engine, CheckIn, me)
    assert (checkin.craving_level, checkin.substance, checkin.triggers) == (
        7,
        "alcohol",
        ["lonely", "tired"],
    )
    [followup] = await rows(engine, FollowUp, me)
    assert followup.kind == "craving_checkback" and followup.status == "pending"

    assert "How's the craving now?" in await chat.followup(me, "craving_checkback")
    answer = await chat.press("It passed")
    assert "real win" in answer
    [checkin] = await rows(engine, CheckIn, me)
    assert checkin.outcome == "passed"


async def test_a_level_in_the_first_message_is_not_asked_again(service: KindredService) -> None:
    chat = await consenting(service)
    answer = await chat.say("craving heroin bad like 9/10")
    assert "What might be feeding it?" in answer
    answer = await chat.say("done")
    assert "really hard" in answer  # a strong craving is acknowledged as such
    assert "Talk to a person" in chat.labels


async def test_a_strong_craving_is_flagged_for_a_person(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = await consenting(service)
    await chat.say("really want to use")
    await chat.press("9")
    await chat.press("Skip")
    await chat.press("Done")
    answer = await chat.press("Talk to a person")
    assert "doesn't have a volunteer desk set up" in answer
    [escalation] = await rows(engine, Escalation, identity.pseudonym("console", chat.user))
    assert escalation.reason in ("high_craving", "request_peer")


async def test_without_consent_nothing_is_stored(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("No")
    await chat.say("i have a craving")
    await chat.press("5")
    await chat.press("Skip")
    answer = await chat.press("Done")
    assert "haven't saved this" in answer
    assert await rows(engine, CheckIn, identity.pseudonym("console", chat.user)) == []


async def test_check_back_still_there_then_used_leads_to_lapse_support(
    service: KindredService, identity: Identity
) -> None:
    chat = await consenting(service)
    me = identity.pseudonym("console", chat.user)
    await chat.followup(me, "craving_checkback")
    answer = await chat.press("Still there")
    assert "still here too" in answer
    await chat.followup(me, "craving_checkback")
    answer = await chat.press("I used")
    assert "A slip doesn't wipe out" in answer


async def test_lapse_is_met_without_judgement_and_with_overdose_safety(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = await consenting(service)
    answer = await chat.say("i relapsed last night, used dope after 3 months")
    assert "takes courage" in answer
    answer = await chat.say("i was lonely and fighting with my partner")
    assert "tolerance drops" in answer and "naloxone" in answer.lower()
    answer = await chat.press("Make a plan")
    assert "next 24 hours" in answer
    [checkin] = await rows(engine, CheckIn, identity.pseudonym("console", chat.user))
    assert checkin.kind == "lapse" and checkin.used is True
    assert checkin.substance == "opioids"
    assert "lonely" in (checkin.triggers or [])


async def test_lapse_can_lead_to_treatment(service: KindredService) -> None:
    chat = await consenting(service)
    await chat.say("I drank again")
    await chat.press("Skip")
    answer = await chat.press("Find treatment")
    assert "Which country" in answer
    answer = await chat.say("ireland")
    assert "1800 459 459" in answer or "HSE" in answer


async def test_typing_a_button_label_works_like_tapping_it(service: KindredService) -> None:
    # Through the service (not the console's own label matching), as on Telegram.
    chat = await consenting(service)
    await chat.say("craving 6/10 booze")
    chat.buttons = []  # forget what the console saw: the service must remember it
    answer = await chat.say("Done")
    assert "What would help now?" in answer
    assert "emergency" not in answer.lower()
