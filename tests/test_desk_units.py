"""The desk's parts on their own: masking, names, the peer flow, the card, atomic claims."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import sessionmaker
from bot.db.models import CheckIn, Escalation, User, Volunteer
from bot.desk import store
from bot.desk.config import DeskSettings
from bot.desk.masking import hidden_contact, mask_contacts
from bot.desk.models import DeskTicket, DeskTranscriptLine
from bot.desk.names import friendly_name, word_lists
from bot.desk.summary import risk_flags, topic_title, trend_words
from bot.desk.telegram import Desk
from bot.repository import utcnow
from flows import peer
from flows.copy import catalogue
from flows.engine import Event, EventKind, OpenEscalation, Person, State
from nlu.understanding import IntentScore, Understanding

PERSON = State(person=Person(language="en", country="Ireland", onboarded=True), desk=True)

# -- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "hidden"),
    [
        ("call me on 07700 900123 pls", "07700"),
        ("my num +44 7700 900123", "7700"),
        ("my cell 555-123-4567", "555-123"),
        ("ring me 0871234567", "0871234567"),
        ("(212) 555-0199 after 6", "555-0199"),
        ("mail me at a.b+c@example.org", "example.org"),
        ("I'm @blue_heron_99 on here", "@blue_heron_99"),
        ("t.me/someone_private", "someone_private"),
        ("https://telegram.me/another", "another"),
        ("wa.me/447700900123", "447700900123"),
        ("insta: instagram.com/me.private", "me.private"),
    ],
)
def test_contact_details_are_masked(message: str, hidden: str) -> None:
    masked = mask_contacts(message, "GB")
    assert masked.changed and hidden not in masked.text
    assert "hidden]" in masked.text


@pytest.mark.parametrize(
    "message",
    [
        "day 120 without a drink",
        "it was 2024-11-27 at 10:30",
        "I have 3 kids and 2 dogs",
        "the Samaritans are on 116 123",
        "call 999 if you're in danger",
        "SAMHSA: 1-800-662-4357",
        "see https://www.nhs.uk/live-well/addiction-support/",
        "",
    ],
)
def test_ordinary_text_and_published_helplines_pass(message: str) -> None:
    assert mask_contacts(message, "GB") == type(mask_contacts(message))(message, False)


def test_a_personal_number_ending_like_a_helpline_is_still_masked() -> None:
    assert mask_contacts("07700 900999", "GB").changed


def test_hidden_contacts_in_entities() -> None:
    assert hidden_contact([("text_mention", None)])
    assert hidden_contact([("text_link", "https://t.me/someone")])
    assert not hidden_contact([("text_link", "https://www.nhs.uk"), ("bold", None)])


# -- names ------------------------------------------------------------------------------------


def test_friendly_names_are_stable_and_plain() -> None:
    first = friendly_name("a" * 64)
    assert first == friendly_name("a" * 64)
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+ \d{1,2}", first)
    names = {friendly_name(secrets.token_hex(32)) for _ in range(500)}
    assert len(names) > 490
    assert friendly_name("a" * 64, bump=1) != first


def test_word_lists_are_unique_and_gentle() -> None:
    adjectives, animals = word_lists()
    assert len(set(adjectives)) == len(adjectives) >= 50
    assert len(set(animals)) == len(animals) >= 50
    unkind = {"rat", "snake", "pig", "slug", "worm", "leech", "weasel", "sloth", "vulture"}
    assert not unkind & {a.lower() for a in animals}


# -- the peer flow ----------------------------------------------------------------------------


def said(message: str, intent: str) -> Event:
    """Text as the NLU hands it over."""
    return Event(
        EventKind.TEXT, text=message, understanding=Understanding(message, IntentScore(intent, 0.9))
    )


def test_a_request_is_confirmed_before_anything_opens() -> None:
    asked = peer.start(PERSON, said("can i talk to a person", "request_peer"))
    assert asked.effects == () and asked.state.step == peer.Step.CONFIRM
    assert [b.payload for row in asked.replies[0].buttons for b in row] == [peer.YES, peer.NO]
    yes = peer.handle(asked.state, Event(EventKind.BUTTON, payload=peer.YES))
    assert yes is not None
    assert yes.effects == (OpenEscalation(reason="request_peer", priority=2),)
    assert yes.state.step == peer.Step.WAITING
    typed = peer.handle(asked.state, said("yes please", "affirm"))
    assert typed is not None and typed.effects == yes.effects
    no = peer.handle(asked.state, Event(EventKind.BUTTON, payload=peer.NO))
    assert no is not None and no.effects == () and no.state.flow is None
    # Waiting: asking again does not open a second request; other things go to the router.
    again = peer.handle(yes.state, said("i want a person", "request_peer"))
    assert again is not None and again.effects == ()
    assert peer.handle(yes.state, said("craving", "craving")) is None


def test_desk_moments_speak_plainly() -> None:
    connected = peer.connected(PERSON, "Amber Fox 12", asked=True)
    assert "Amber Fox 12" in connected.replies[0].text and "/end" in connected.replies[0].text
    assert connected.state.step == peer.Step.RELAY
    nobody = peer.nobody_on_shift(PERSON, 7)
    assert "no volunteer is on shift" in nobody.replies[0].text
    assert "People you can reach" in nobody.replies[0].text
    ended = peer.ended(connected.state, 7, "Amber Fox 12", by_person=False)
    payloads = [b.payload for row in ended.replies[0].buttons for b in row]
    assert payloads[:5] == [f"pd:rate:7:{n}" for n in range(1, 6)]
    assert payloads[5] == "pd:report:7"
    assert peer.withdrawn(connected.state).state.flow is None


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [
        ("pd:rate:12:5", peer.DeskPress("rate", 12, "5")),
        ("pd:report:12", peer.DeskPress("report", 12)),
        ("pd:cancel:3", peer.DeskPress("cancel", 3)),
        ("pd:cb:3:yes", peer.DeskPress("cb", 3, "yes")),
        ("pd:rate:12:6", None),
        ("pd:rate:12", None),
        ("pd:report:12:1", None),
        ("pd:cb:3:maybe", None),
        ("pd:drop:1", None),
        ("pd:rate:-1:5", None),
        ("pd:rate:1:5\n", None),
        ("crv:peer", None),
        (None, None),
    ],
)
def test_desk_payloads_are_parsed_strictly(payload: str | None, parsed: Any) -> None:
    assert peer.parse_desk_payload(payload) == parsed


# -- the card ---------------------------------------------------------------------------------


def checkin(days_ago: float, **fields: Any) -> CheckIn:
    """A check-in row as stored."""
    return CheckIn(
        kind=fields.pop("kind", "craving"), created_at=utcnow() - timedelta(days=days_ago), **fields
    )


def test_trend_in_words() -> None:
    assert trend_words([]) == "none shared"
    rising = [checkin(9 - i, craving_level=level) for i, level in enumerate((2, 3, 2, 6, 7, 8))]
    assert trend_words(rising).startswith("cravings rising (2 → 8 out of 10)")
    easing = [
        checkin(9 - i, craving_level=level, mood=mood)
        for i, (level, mood) in enumerate(((8, 2), (7, 2), (3, 4), (2, 4)))
    ]
    words = trend_words(easing)
    assert "cravings easing" in words and "mood improving" in words
    lapse = [checkin(1, kind="lapse", used=True)]
    assert "1 lapse reported" in trend_words(lapse)


def test_risk_flags() -> None:
    now = utcnow()
    assert risk_flags("request_peer", [], 1, now) == ()
    flags = risk_flags(
        "crisis_suicide",
        [checkin(1, kind="lapse", used=True), checkin(0.5, craving_level=9)],
        3,
        now,
    )
    assert flags == (
        "spoke of suicide or self-harm",
        "lapse in the last 7 days (overdose risk is higher after a break)",
        "craving of 8 or more out of 10 in the last 2 days",
        "3 requests in 30 days",
    )


def test_topic_title_is_number_priority_and_reason_only() -> None:
    assert topic_title(42, 0, "crisis_overdose") == "#42 · P0 · crisis: overdose or emergency"
    assert topic_title(7, 2, "something_new") == "#7 · P2 · something new"


def test_every_desk_message_id_exists() -> None:
    code = "\n".join(p.read_text() for p in Path("bot/desk").glob("*.py"))
    used = set(re.findall(r'desk_text\(\s*"([a-z_.]+)"', code))
    used |= set(re.findall(r'_say\(\s*state,\s*"([a-z_.]+)"', Path("flows/peer.py").read_text()))
    families = {"desk.reason.", "desk.flag.", "desk.trend."}
    keys = catalogue("en")
    assert used and not sorted(k for k in used if k not in keys)
    assert all(any(k.startswith(f) for k in keys) for f in families)
    for reason in (
        "request_peer",
        "checkup",
        "crisis_suicide",
        "crisis_overdose",
        "lapse",
        "high_craving",
    ):
        assert f"desk.reason.{reason}" in keys


# -- the database -----------------------------------------------------------------------------


async def _person_with_request(engine: AsyncEngine, **escalation: Any) -> tuple[str, int]:
    sessions = sessionmaker(engine)
    pseudonym = secrets.token_hex(32)
    async with sessions.begin() as session:
        session.add(
            User(id=pseudonym, channel="console", language="en", onboarded=True, active=True)
        )
        await session.flush()
        row = Escalation(
            user_id=pseudonym, reason="request_peer", priority=2, status="open", **escalation
        )
        session.add(row)
        await session.flush()
        session.add(
            DeskTicket(
                escalation_id=row.id,
                announced_priority=2,
                pings=0,
                check_back=False,
                awaiting_report=False,
                announced_at=utcnow(),
            )
        )
        return pseudonym, row.id


async def _volunteers(engine: AsyncEngine, count: int) -> list[Volunteer]:
    sessions = sessionmaker(engine)
    made = []
    async with sessions.begin() as session:
        for _ in range(count):
            pseudonym = secrets.token_hex(32)
            volunteer = Volunteer(
                pseudonym=pseudonym,
                display_name=f"Test {pseudonym[:12]}",
                role="volunteer",
                active=True,
                on_shift=True,
            )
            session.add(volunteer)
            made.append(volunteer)
    return made


async def test_concurrent_claims_have_exactly_one_winner(engine: AsyncEngine) -> None:
    _, escalation_id = await _person_with_request(engine)
    volunteers = await _volunteers(engine, 6)
    sessions = sessionmaker(engine)

    async def press(volunteer: Volunteer) -> str:
        async with sessions.begin() as session:
            return (await store.claim(session, escalation_id, volunteer, utcnow())).outcome

    outcomes = await asyncio.gather(*(press(v) for v in volunteers))
    assert sorted(outcomes) == ["claimed"] + ["taken"] * 5
    async with sessions() as session:
        row = await session.get(Escalation, escalation_id)
        ticket = await session.get(DeskTicket, escalation_id)
    assert row is not None and row.status == "claimed"
    winner = volunteers[outcomes.index("claimed")]
    assert row.claimed_by == winner.id
    assert ticket is not None and ticket.claim_seconds is not None and ticket.claim_seconds >= 0


async def test_invites_redeem_once(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions.begin() as session:
        code = await store.create_invite(session, "coordinator")
    first, second = secrets.token_hex(32), secrets.token_hex(32)
    async with sessions.begin() as session:
        joined = await store.redeem_invite(session, code, first, "ref")
    async with sessions.begin() as session:
        again = await store.redeem_invite(session, code, second, "ref")
    assert joined.outcome == "joined" and joined.volunteer is not None
    assert joined.volunteer.role == "coordinator"
    assert again.outcome == "invalid"
    with pytest.raises(ValueError, match="role"):
        async with sessions.begin() as session:
            await store.create_invite(session, "admin")


async def test_expected_wait_counts_requests_that_waited_as_long(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    waited = 10**8  # longer than any other test's request, so only these three count
    for extra in (60, 120, 600):
        _, escalation_id = await _person_with_request(engine)
        async with sessions.begin() as session:
            ticket = await session.get(DeskTicket, escalation_id)
            assert ticket is not None
            ticket.claim_seconds = waited + extra
    async with sessions() as session:
        assert await store.expected_wait_minutes(session, utcnow(), 9, waited) == 2
        assert await store.expected_wait_minutes(session, utcnow(), 9, waited * 10) == 9


async def test_transcripts_past_retention_are_purged(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    _, escalation_id = await _person_with_request(engine)
    async with sessions.begin() as session:
        session.add(
            DeskTranscriptLine(
                escalation_id=escalation_id,
                sender="person",
                body_encrypted="old",
                at=utcnow() - timedelta(days=31),
            )
        )
        session.add(
            DeskTranscriptLine(escalation_id=escalation_id, sender="person", body_encrypted="new")
        )
    desk = Desk(
        None,  # type: ignore[arg-type]  # the purge sends nothing
        None,
        DeskSettings(transcript_retention_days=30),
        sessions=sessions,
        identity=None,  # type: ignore[arg-type]
        nlu=None,  # type: ignore[arg-type]
        service=None,  # type: ignore[arg-type]
    )
    await desk._purge_transcripts()
    async with sessions() as session:
        left = list(
            await session.scalars(
                select(DeskTranscriptLine.body_encrypted).where(
                    DeskTranscriptLine.escalation_id == escalation_id
                )
            )
        )
    assert left == ["new"]


async def test_claim_stats_shape(engine: AsyncEngine) -> None:
    sessions = sessionmaker(engine)
    async with sessions() as session:
        figures = await store.claim_stats(session, utcnow() - timedelta(days=7))
    assert set(figures) == {
        "requests",
        "claimed",
        "unclaimed_open",
        "withdrawn",
        "claim_seconds_median",
        "claim_seconds_p90",
        "claim_seconds_max",
        "ratings",
        "rating_mean",
        "reports",
    }
    assert figures["requests"] >= figures["claimed"]
