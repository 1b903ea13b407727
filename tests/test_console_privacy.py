"""/mydata exports everything; /delete erases every row about the person, table by table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.identity import Identity
from bot.privacy import rows_about
from bot.service import KindredService
from tests.transcript import Conversation


async def count_rows(engine: AsyncEngine, pseudonym: str) -> dict[str, int]:
    """Rows about the person in every table that can hold them."""
    async with sessionmaker(engine)() as session:
        return await rows_about(session, pseudonym)


def take_file(path: str) -> dict[str, Any]:
    """Read the exported file the console saved, and remove it."""
    content: dict[str, Any] = json.loads(Path(path).read_text())
    Path(path).unlink()
    return content


async def a_person_with_history(service: KindredService) -> Conversation:
    """Someone who consented, logged a craving with a check back, and had a crisis."""
    chat = Conversation(service)
    await chat.say("/start")
    await chat.press("Yes")
    assert "What might be feeding it?" in await chat.say("craving a drink 6/10")
    await chat.press("Done")
    await chat.press("In 30 min")
    await chat.say("i want to die")
    return chat


async def test_mydata_exports_everything_readably(service: KindredService) -> None:
    chat = await a_person_with_history(service)
    answer = await chat.say("/mydata")
    assert "everything I have stored about you" in answer
    exported = take_file(answer.split("saved to ")[1].rstrip("]\n "))
    assert exported["profile"]["consent_to_store_checkins"] is True
    assert [c["craving_level"] for c in exported["checkins"]] == [6]
    kinds = {f["kind"] for f in exported["scheduled_messages"]}
    assert kinds == {"craving_checkback", "crisis_checkback"}
    assert exported["requests_for_a_person"][0]["reason"] == "crisis_suicide"
    assert chat.user not in json.dumps(exported)


async def test_delete_asks_first_and_keep_keeps(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = await a_person_with_history(service)
    answer = await chat.say("/delete")
    assert "can't be undone" in answer
    assert "nothing was erased" in await chat.press("No, keep it")
    assert (await count_rows(engine, identity.pseudonym("console", chat.user)))["checkins"] == 1


async def test_delete_erases_every_row_about_the_person(
    service: KindredService, engine: AsyncEngine, identity: Identity
) -> None:
    chat = await a_person_with_history(service)
    me = identity.pseudonym("console", chat.user)
    before = await count_rows(engine, me)
    assert before["checkins"] and before["followups"] and before["escalations"]
    await chat.say("please delete all my data")
    answer = await chat.press("Yes, erase everything")
    assert "Everything I had stored about you is erased" in answer
    after = await count_rows(engine, me)
    assert set(after.values()) == {0}, after
    # Writing again starts fresh, as promised.
    assert "automated assistant" in await chat.say("hi")
