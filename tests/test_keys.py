"""`kindred keys rotate`: every encrypted value ends up under the newest key and stays readable."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.db.models import CheckIn, Escalation, User, Volunteer
from bot.desk.models import DeskTranscriptLine
from bot.identity import Identity, UndecryptableValue
from bot.keys import KeyConfigError, encrypted_columns, generate_key, parse_keys, rotate_all
from tests import isolated_db
from tests.conftest import TEST_SECRET, unique_user

# This module's own database: a rotation touches every row there is.
fresh_db_url = isolated_db.fresh_db_url
fresh_engine = isolated_db.fresh_engine


def derived_key(secret: bytes) -> Fernet:
    """The key Identity derives from the deployment secret (the pre-rotation key)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kindred-v1", info=b"encryption")
    return Fernet(base64.urlsafe_b64encode(raw.derive(secret)))


async def seed(engine: AsyncEngine, identity: Identity, people: int) -> dict[str, str]:
    """People with encrypted chat refs and notes, a volunteer; returns {pseudonym: chat id}."""
    chats: dict[str, str] = {}
    async with sessionmaker(engine).begin() as session:
        for n in range(people):
            pseudonym = identity.pseudonym("test", unique_user())
            chat_id = str(9_000_000_000 + n)
            chats[pseudonym] = chat_id
            session.add(User(id=pseudonym, channel="test", chat_ref=identity.encrypt(chat_id)))
            await session.flush()
            session.add(
                CheckIn(
                    user_id=pseudonym,
                    kind="craving",
                    craving_level=5,
                    note_encrypted=identity.encrypt(f"note {n}"),
                )
            )
        escalation = Escalation(user_id=pseudonym, priority=1, reason="crisis", status="closed")
        session.add(escalation)
        await session.flush()
        session.add(
            DeskTranscriptLine(
                escalation_id=escalation.id,
                sender="person",
                body_encrypted=identity.encrypt("relayed words"),
            )
        )
        volunteer = identity.pseudonym("test", unique_user())
        chats[volunteer] = "5550001"
        session.add(
            Volunteer(
                pseudonym=volunteer,
                display_name="River",
                chat_ref=identity.encrypt("5550001"),
            )
        )
    return chats


def test_the_encrypted_columns_are_found_by_convention() -> None:
    names = {column.name for column in encrypted_columns()}
    assert {
        "users.chat_ref",
        "volunteers.chat_ref",
        "checkins.note_encrypted",
        "desk_transcript_lines.body_encrypted",  # the volunteer desk's relayed messages
    } <= names


def test_identity_without_keys_is_unchanged_and_keys_go_first() -> None:
    old = Identity(TEST_SECRET)
    token = old.encrypt("42")
    assert derived_key(TEST_SECRET).decrypt(token.encode()) == b"42"  # as before rotation existed
    new_key = generate_key()
    rotated = Identity(TEST_SECRET, encryption_keys=(new_key,))
    assert rotated.decrypt(token) == "42"  # old values still read
    fresh = rotated.encrypt("43")
    assert Fernet(new_key).decrypt(fresh.encode()) == b"43"  # new values use the newest key
    assert not rotated.is_current(token) and rotated.is_current(fresh)
    assert old.pseudonym("telegram", 1) == rotated.pseudonym("telegram", 1)  # pseudonyms stay


def test_parse_keys_accepts_a_list_and_rejects_junk_without_echoing_it() -> None:
    one, two = generate_key(), generate_key()
    assert parse_keys(f"{one}, {two}") == (one, two)
    assert parse_keys(None) == () and parse_keys("  ") == ()
    with pytest.raises(KeyConfigError) as caught:
        parse_keys(f"{one},not-a-key-at-all")
    assert "entry 2" in str(caught.value) and "not-a-key" not in str(caught.value)


async def test_rotation_keeps_data_readable_and_leaves_no_old_key_tokens(
    fresh_engine: AsyncEngine,
) -> None:
    engine = fresh_engine
    before = Identity(TEST_SECRET)
    chats = await seed(engine, before, people=7)
    newest = generate_key()
    after = Identity(TEST_SECRET, encryption_keys=(newest,))

    report = await rotate_all(engine, after, batch_size=3)  # several batches
    assert report.rotated["users.chat_ref"] >= 7
    assert report.rotated["checkins.note_encrypted"] >= 7
    assert report.rotated["volunteers.chat_ref"] >= 1
    assert report.rotated["desk_transcript_lines.body_encrypted"] >= 1

    only_newest, only_old = Fernet(newest), derived_key(TEST_SECRET)
    async with sessionmaker(engine)() as session:
        users = (await session.scalars(select(User).where(User.id.in_(chats)))).all()
        notes = (await session.scalars(select(CheckIn).where(CheckIn.user_id.in_(chats)))).all()
        volunteers = (
            await session.scalars(select(Volunteer).where(Volunteer.pseudonym.in_(chats)))
        ).all()
    assert len(users) == 7 and len(notes) == 7 and len(volunteers) == 1
    for user in users:
        assert user.chat_ref is not None
        assert after.decrypt(user.chat_ref) == chats[user.id]  # readable through Identity
        assert only_newest.decrypt(user.chat_ref.encode()).decode() == chats[user.id]
        with pytest.raises(InvalidToken):
            only_old.decrypt(user.chat_ref.encode())  # the old key alone reads nothing
    for note in notes:
        assert note.note_encrypted is not None
        assert only_newest.decrypt(note.note_encrypted.encode()).decode().startswith("note ")
    assert volunteers[0].chat_ref is not None
    assert only_newest.decrypt(volunteers[0].chat_ref.encode()) == b"5550001"
    async with sessionmaker(engine)() as session:
        lines = (await session.scalars(select(DeskTranscriptLine))).all()
    assert lines and {only_newest.decrypt(line.body_encrypted.encode()) for line in lines} == {
        b"relayed words"
    }

    # Run again: nothing left to rotate (resumable, idempotent).
    again = await rotate_all(engine, after)
    assert again.total_rotated == 0
    assert again.current["users.chat_ref"] >= 7
    # Dropping the old key is now safe for these rows: the newest key alone reads them all.
    assert only_newest.decrypt(users[0].chat_ref.encode())  # type: ignore[union-attr]


async def test_values_under_an_unknown_key_are_reported_not_destroyed(
    fresh_engine: AsyncEngine,
) -> None:
    engine = fresh_engine
    stranger = Identity(b"a different deployment's secret")
    pseudonym = stranger.pseudonym("test", unique_user())
    token = stranger.encrypt("123456789")
    async with sessionmaker(engine).begin() as session:
        session.add(User(id=pseudonym, channel="test", chat_ref=token))
    ours = Identity(TEST_SECRET, encryption_keys=(generate_key(),))
    report = await rotate_all(engine, ours)
    assert report.unreadable["users.chat_ref"] >= 1
    async with sessionmaker(engine)() as session:
        kept = await session.get(User, pseudonym)
    assert kept is not None and kept.chat_ref == token
    with pytest.raises(UndecryptableValue):
        ours.rotate(token)
