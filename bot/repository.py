"""Reading and writing a person's state, and applying the effects flows ask for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, Update, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db.models import CheckIn, ConversationState, Escalation, FollowUp, ProcessedUpdate, User
from bot.followup_rules import pause_until
from bot.privacy import erase_person
from bot.programmes import join_programme
from flows.engine import (
    CancelFollowUps,
    Effect,
    EraseEverything,
    ExportData,
    JoinProgramme,
    MarkOnboarded,
    OpenEscalation,
    Outcome,
    PauseFollowUps,
    Person,
    RecordCheckIn,
    RecordOutcome,
    ResumeFollowUps,
    ScheduleFollowUp,
    SetConsent,
    SetCountry,
    SetLanguage,
    SetTimezone,
    ShowProgress,
    State,
)

Encrypt = Callable[[str], str]
OFFERED_KEY = "_offered_buttons"
USERS = cast(Table, User.__table__)
STATES = cast(Table, ConversationState.__table__)
PROCESSED = cast(Table, ProcessedUpdate.__table__)


LAST_SEEN_RESOLUTION = timedelta(minutes=10)


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the only time the database stores)."""
    return datetime.now(UTC)


async def claim_update(session: AsyncSession, bot_id: int, update_id: int) -> bool:
    """Record an update id; False when it was already handled (a redelivery)."""
    # One statement instead of SAVEPOINT + INSERT + RELEASE (and an exception on a repeat):
    # INSERT ... ON CONFLICT DO NOTHING RETURNING answers "was it new?" in one round trip.
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    claimed = await session.scalar(
        insert(ProcessedUpdate)
        .values(bot_id=bot_id, update_id=update_id)
        .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
        .returning(ProcessedUpdate.id)
    )
    return claimed is not None


async def get_or_create_user(
    session: AsyncSession, user_id: str, channel: str, language: str, chat_ref: str | None
) -> User:
    """The person's row, locked for this update (created on first contact)."""
    # The conversation state comes in the same round trip (into the identity map, where
    # load_state and save_outcome find it); only the person's row is locked.
    found = (
        await session.execute(
            select(User, ConversationState)
            .outerjoin(ConversationState, ConversationState.user_id == User.id)
            .where(User.id == user_id)
            .with_for_update(of=User)
        )
    ).first()
    user = found[0] if found is not None else None
    if found is not None and found[1] is not None:
        # The identity map holds objects weakly: keep the state row alive for this transaction.
        session.info["conversation_state"] = found[1]
    if user is not None:
        touch(user, chat_ref)
        return user
    try:
        async with session.begin_nested():
            user = User(
                id=user_id,
                channel=channel,
                chat_ref=chat_ref,
                language=language,
                onboarded=False,
                active=True,
            )
            session.add(user)
            await session.flush()
            return user
    except IntegrityError:
        # Another worker created the same person a moment ago.
        existing = await session.scalar(select(User).where(User.id == user_id).with_for_update())
        assert existing is not None
        return existing


def touch(user: User | UserRow, chat_ref: str | None) -> None:
    """They wrote to us: note when (coarsely), where to reply, and that they can be reached."""
    now = utcnow()
    seen = user.last_seen_at
    if seen is not None and seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    # Re-engagement and retention count days: a write per message is not needed.
    if seen is None or now - seen > LAST_SEEN_RESOLUTION:
        user.last_seen_at = now
    if chat_ref is not None and user.chat_ref is None:
        user.chat_ref = chat_ref
    if not user.active:
        user.active = True  # they wrote to us again: they unblocked the bot


async def load_state(session: AsyncSession, user: User) -> State:
    """The person's settings and conversation step as the flows see them."""
    row = await session.get(ConversationState, user.id)
    person = Person(
        language=user.language,
        country=user.country,
        consent_checkins=user.consent_checkins,
        onboarded=user.onboarded,
        timezone=user.timezone,
    )
    if row is None:
        return State(person=person)
    data = {k: v for k, v in (row.data or {}).items() if k != OFFERED_KEY}
    return State(person=person, flow=row.flow, step=row.step, data=data)


async def offered_buttons(session: AsyncSession, user_id: str) -> dict[str, str]:
    """Labels (casefolded) -> payloads of the buttons on the person's screen now."""
    row = await session.get(ConversationState, user_id)
    offered = (row.data or {}).get(OFFERED_KEY) if row is not None else None
    return dict(offered) if isinstance(offered, dict) else {}


def buttons_offered_by(outcome: Outcome) -> dict[str, str] | None:
    """The buttons of the last reply that has any; None when the outcome offers none."""
    for reply in reversed(outcome.replies):
        if reply.buttons:
            return {b.label.casefold(): b.payload for row in reply.buttons for b in row}
    return None


async def save_outcome(
    session: AsyncSession, user: User, outcome: Outcome, encrypt: Encrypt
) -> None:
    """Persist the next conversation state and apply every effect, in one transaction."""
    if any(isinstance(effect, EraseEverything) for effect in outcome.effects):
        # Nothing else of this outcome may outlive the erasure.
        await erase_person(session, user.id)
        return
    state = outcome.state
    row = await session.get(ConversationState, user.id)
    if row is None:
        row = ConversationState(user_id=user.id)
        session.add(row)
    # Remember the buttons on screen, so typing a label works like tapping it.
    offered = buttons_offered_by(outcome)
    row.flow, row.step = state.flow, state.step
    row.data = {**state.data, OFFERED_KEY: offered} if offered else dict(state.data)
    row.updated_at = utcnow()
    for effect in outcome.effects:
        await apply_effect(session, user, effect, encrypt)


async def apply_effect(
    session: AsyncSession, user: User | UserRow, effect: Effect, encrypt: Encrypt
) -> None:
    """Carry out one effect for this person."""
    match effect:
        case SetConsent(consent=consent):
            user.consent_checkins = consent
            user.consent_at = utcnow()
        case MarkOnboarded():
            user.onboarded = True
        case SetCountry(country=country):
            user.country = country
        case OpenEscalation(reason=reason, priority=priority):
            await _open_escalation(session, user, reason, priority)
        case ScheduleFollowUp(kind=kind, delay_minutes=delay, payload=payload):
            await _schedule_followup(session, user, kind, delay, dict(payload))
        case CancelFollowUps(kinds=kinds):
            await cancel_followups(session, user.id, kinds)
        case PauseFollowUps(days=days):
            user.paused_until = pause_until(utcnow(), days)
        case ResumeFollowUps():
            user.paused_until = None
        case SetTimezone(zone=zone):
            user.timezone = zone
        case SetLanguage(language=language):
            user.language = language
        case RecordCheckIn():
            # Consent is enforced here, not only in the flows: no consent, no row.
            if user.consent_checkins:
                session.add(_checkin_row(user.id, effect, encrypt))
        case RecordOutcome(kind=kind, outcome=result):
            if user.consent_checkins:
                await _record_outcome(session, user.id, kind, result)
        case JoinProgramme(code=code):
            # join_programme only sets `programme`, which a UserRow carries too.
            await join_programme(session, cast(User, user), code)
        case ShowProgress() | ExportData() | EraseEverything():
            pass  # progress and export are read after the transaction; erasure is above


def _checkin_row(user_id: str, record: RecordCheckIn, encrypt: Encrypt) -> CheckIn:
    return CheckIn(
        user_id=user_id,
        kind=record.kind,
        mood=record.mood,
        craving_level=record.craving_level,
        substance=record.substance,
        triggers=list(record.triggers) or None,
        used=record.used,
        answers=dict(record.answers) or None,
        note_encrypted=encrypt(record.note) if record.note else None,
    )


async def _record_outcome(session: AsyncSession, user_id: str, kind: str, result: str) -> None:
    latest = await session.scalar(
        select(CheckIn)
        .where(CheckIn.user_id == user_id, CheckIn.kind == kind)
        .order_by(CheckIn.created_at.desc(), CheckIn.id.desc())
        .limit(1)
    )
    if latest is not None:
        latest.outcome = result


async def cancel_followups(session: AsyncSession, user_id: str, kinds: tuple[str, ...]) -> None:
    """Cancel pending follow-ups of these kinds (all kinds when empty)."""
    query = update(FollowUp).where(FollowUp.user_id == user_id, FollowUp.status == "pending")
    if kinds:
        query = query.where(FollowUp.kind.in_(kinds))
    await session.execute(query.values(status="cancelled"))


async def _open_escalation(
    session: AsyncSession, user: User | UserRow, reason: str, priority: int
) -> None:
    """One open escalation per person: a more urgent reason raises its priority."""
    open_one = await session.scalar(
        select(Escalation).where(Escalation.user_id == user.id, Escalation.status == "open")
    )
    if open_one is None:
        session.add(Escalation(user_id=user.id, reason=reason, priority=priority, status="open"))
    elif priority < open_one.priority:
        open_one.priority, open_one.reason = priority, reason


async def _schedule_followup(
    session: AsyncSession,
    user: User | UserRow,
    kind: str,
    delay_minutes: int,
    payload: dict[str, object],
) -> None:
    """Replace the person's pending follow-up of this kind, so repeats never pile up."""
    due = utcnow() + timedelta(minutes=delay_minutes)
    pending = await session.scalar(
        select(FollowUp).where(
            FollowUp.user_id == user.id, FollowUp.kind == kind, FollowUp.status == "pending"
        )
    )
    key = f"followup:{user.id}:{kind}:{due:%Y%m%dT%H%M%S}"
    if pending is not None:
        pending.due_at, pending.payload, pending.idempotency_key = due, payload, key
        return
    session.add(
        FollowUp(
            user_id=user.id,
            kind=kind,
            due_at=due,
            status="pending",
            idempotency_key=key,
            payload=payload,
        )
    )


# ---------------------------------------------------------------------------------------------
# The per-update path in SQL statements, without ORM objects: an update costs BEGIN, one
# statement that claims the update id and locks and reads the person (two on SQLite), the
# writes that changed something, and COMMIT. First contact, erasure and the rarer effects
# (check-ins, follow-ups, escalations) go through the ORM functions above on the same
# transaction.
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class UserRow:
    """A person's `users` row as read for one update; what changed is written in one UPDATE."""

    id: str
    channel: str
    chat_ref: str | None
    language: str
    country: str | None
    timezone: str | None
    consent_checkins: bool | None
    consent_at: datetime | None
    onboarded: bool
    active: bool
    paused_until: datetime | None
    programme: str | None
    recovery_goal: str | None
    recovery_start: date | None
    created_at: datetime
    last_seen_at: datetime
    _read: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UserRow:
        """The row's `users` columns (other columns of the row are ignored)."""
        values = {name: row[name] for name in USER_COLUMNS}
        return cls(**values, _read=values)

    def changes(self) -> dict[str, Any]:
        """Columns set to a new value since the row was read."""
        return {
            name: getattr(self, name)
            for name, before in self._read.items()
            if getattr(self, name) != before
        }


USER_COLUMNS = tuple(f.name for f in fields(UserRow) if not f.name.startswith("_"))


@dataclass(slots=True)
class StoredState:
    """The person's `conversation_states` row as read for one update."""

    flow: str | None
    step: str | None
    data: dict[str, Any]

    def as_state(self, user: UserRow) -> State:
        """The flows' view: the person's settings and their conversation step."""
        person = Person(
            language=user.language,
            country=user.country,
            consent_checkins=user.consent_checkins,
            onboarded=user.onboarded,
            timezone=user.timezone,
        )
        data = {k: v for k, v in self.data.items() if k != OFFERED_KEY}
        return State(person=person, flow=self.flow, step=self.step, data=data)

    def offered(self) -> dict[str, str]:
        """Labels (casefolded) -> payloads of the buttons on the person's screen now."""
        offered = self.data.get(OFFERED_KEY)
        return dict(offered) if isinstance(offered, dict) else {}


@dataclass(slots=True)
class Locked:
    """What the first statement of an update found: a redelivery, or the person, locked."""

    claimed: bool
    user: UserRow | None = None
    state: StoredState | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Locked:
        """The person and their conversation state, from a row of the locking statement."""
        state = StoredState(row["flow"], row["step"], dict(row["data"] or {}))
        return cls(claimed=True, user=UserRow.from_row(row), state=state)


# Statements are built once: executing the same object reuses its cache key and compiled form.
_LOCK_STATEMENTS: dict[tuple[str, bool], Select[Any]] = {}
_SQLITE_CLAIM = (
    sqlite_insert(PROCESSED)
    .values(bot_id=bindparam("bot_id"), update_id=bindparam("update_id"))
    .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
    .returning(PROCESSED.c.id)
)
SAVE_STATE = (
    update(STATES)
    .where(STATES.c.user_id == bindparam("key"))
    .values(
        flow=bindparam("new_flow"),
        step=bindparam("new_step"),
        data=bindparam("new_data", type_=STATES.c.data.type),
        updated_at=bindparam("now", type_=STATES.c.updated_at.type),
    )
)
_SAVE_USER: dict[frozenset[str], Update] = {}


def _save_user_statement(columns: frozenset[str]) -> Update:
    """UPDATE users SET <these columns> WHERE id = :key, built once per set of columns."""
    statement = _SAVE_USER.get(columns)
    if statement is None:
        statement = (
            update(USERS)
            .where(USERS.c.id == bindparam("key"))
            .values({name: bindparam(f"new_{name}", type_=USERS.c[name].type) for name in columns})
        )
        _SAVE_USER[columns] = statement
    return statement


def _lock_statement(dialect: str, claim: bool) -> Select[Any]:
    """SELECT the person's row and conversation state (locked); on PostgreSQL with the claim.

    Both rows are locked, so that a transaction that waited for another one's lock reads the
    state that one wrote (PostgreSQL re-reads locked rows, not the others, after the wait).
    """
    key = (dialect, claim)
    statement = _LOCK_STATEMENTS.get(key)
    if statement is not None:
        return statement
    columns: list[Any] = [USERS, STATES.c.flow, STATES.c.step, STATES.c.data]
    if claim and dialect == "postgresql":
        claimed = (
            postgresql_insert(PROCESSED)
            .values(bot_id=bindparam("bot_id"), update_id=bindparam("update_id"))
            .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
            .returning(PROCESSED.c.id)
            .cte("claimed")
        )
        columns.insert(0, select(claimed.c.id).scalar_subquery().label("claim_id"))
    statement = (
        select(*columns)
        .join_from(USERS, STATES, STATES.c.user_id == USERS.c.id)
        .where(USERS.c.id == bindparam("user_id"))
        .with_for_update(of=[USERS, STATES])
    )
    _LOCK_STATEMENTS[key] = statement
    return statement


async def claim_and_lock(
    conn: AsyncConnection, bot_id: int, update_id: int | None, user_id: str
) -> Locked | None:
    """Claim the update id and lock the person; None when they have no rows yet.

    None leaves the transaction to be rolled back (on PostgreSQL the claim is in it) and the
    update to be handled by claim_update and get_or_create_user instead.
    """
    dialect = conn.dialect.name
    claim = update_id is not None
    params = {"user_id": user_id, "bot_id": bot_id, "update_id": update_id}
    # SQLite: the claim's INSERT takes the database's write lock, so the read below is consistent.
    if claim and dialect != "postgresql" and await conn.scalar(_SQLITE_CLAIM, params) is None:
        return Locked(claimed=False)
    row = (await conn.execute(_lock_statement(dialect, claim), params)).mappings().first()
    if row is None:
        return None
    if claim and dialect == "postgresql" and row["claim_id"] is None:
        return Locked(claimed=False)
    return Locked.from_row(row)


_NO_SESSION = cast(AsyncSession, None)


async def create_person(
    conn: AsyncConnection, user_id: str, channel: str, language: str, chat_ref: str | None
) -> None:
    """First contact: the person's row and an empty conversation state (kept if they exist)."""
    await create_people(
        conn, [{"id": user_id, "channel": channel, "language": language, "chat_ref": chat_ref}]
    )


async def create_people(conn: AsyncConnection, people: list[dict[str, Any]]) -> None:
    """create_person for several people at once (id, channel, language, chat_ref each)."""
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(
        insert(USERS).on_conflict_do_nothing(index_elements=["id"]),
        [{**person, "onboarded": False, "active": True} for person in people],
    )
    await conn.execute(
        insert(STATES).on_conflict_do_nothing(index_elements=["user_id"]),
        [{"user_id": person["id"], "data": {}} for person in people],
    )


# Effects that only change the person's own row: no ORM session needed.
_ROW_EFFECTS = (
    SetConsent,
    MarkOnboarded,
    SetCountry,
    PauseFollowUps,
    ResumeFollowUps,
    SetTimezone,
    ShowProgress,
    ExportData,
)


def needs_session(outcome: Outcome) -> bool:
    """Whether an outcome has effects beyond the person's own rows (check-ins, follow-ups...)."""
    return any(not isinstance(effect, _ROW_EFFECTS) for effect in outcome.effects)


def state_changes(user: UserRow, stored: StoredState, outcome: Outcome) -> dict[str, Any] | None:
    """SAVE_STATE's parameters when the conversation state changed, else None."""
    state = outcome.state
    offered = buttons_offered_by(outcome)
    data = {**state.data, OFFERED_KEY: offered} if offered else dict(state.data)
    if (state.flow, state.step, data) == (stored.flow, stored.step, stored.data):
        return None
    return {
        "key": user.id,
        "new_flow": state.flow,
        "new_step": state.step,
        "new_data": data,
        "now": utcnow(),
    }


def user_changes(user: UserRow) -> tuple[Update, dict[str, Any]] | None:
    """The UPDATE of the person's row and its parameters, when a column changed."""
    changes = user.changes()
    if not changes:
        return None
    params = {f"new_{name}": value for name, value in changes.items()}
    params["key"] = user.id
    return _save_user_statement(frozenset(changes)), params


async def save_outcome_rows(
    conn: AsyncConnection, user: UserRow, stored: StoredState, outcome: Outcome, encrypt: Encrypt
) -> None:
    """save_outcome for a person read by claim_and_lock: only what changed is written."""
    session: AsyncSession | None = None
    if needs_session(outcome):
        session = AsyncSession(bind=conn, expire_on_commit=False)
    try:
        if session is not None and any(isinstance(e, EraseEverything) for e in outcome.effects):
            await erase_person(session, user.id)
            return
        saved = state_changes(user, stored, outcome)
        if saved is not None:
            await conn.execute(SAVE_STATE, saved)
        for effect in outcome.effects:
            # Row effects never touch the session (_ROW_EFFECTS is an allow-list).
            await apply_effect(session or _NO_SESSION, user, effect, encrypt)
        if session is not None:
            await session.flush()
        changed = user_changes(user)
        if changed is not None:
            await conn.execute(*changed)
    finally:
        if session is not None:
            await session.close()
