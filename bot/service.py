"""One message end to end: identity -> NLU -> flow -> database -> replies (channel-agnostic)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import metrics
from bot.db.engine import write_gate
from bot.db.models import User
from bot.group_commit import GroupCommit, Stepped
from bot.identity import Identity
from bot.inbound import Inbound
from bot.privacy import EXPORT_FILE_NAME, export_file, export_person
from bot.progress_view import local_today, progress_replies
from bot.repository import (
    Locked,
    UserRow,
    claim_and_lock,
    claim_update,
    create_person,
    get_or_create_user,
    load_state,
    offered_buttons,
    save_outcome,
    save_outcome_rows,
    touch,
    utcnow,
)
from flows import router
from flows.copy import languages, text
from flows.engine import (
    Event,
    EventKind,
    ExportData,
    Outcome,
    Person,
    Reply,
    ShowProgress,
    State,
)
from nlu.pipeline import NluPipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """What the service produced for one inbound event."""

    replies: tuple[Reply, ...]
    pseudonym: str
    duplicate: bool = False


class KindredService:
    """The pipeline both channels share; holds no per-person state in memory."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        identity: Identity,
        nlu: NluPipeline,
        default_language: str = "en",
        desk: bool = False,
        nlu_for_language: Callable[[str], NluPipeline | None] | None = None,
        group_commit: bool = True,
    ) -> None:
        self._sessions = sessions
        # The per-update transaction runs on a connection of the sessions' engine.
        bind = sessions.kw.get("bind")
        self._engine: AsyncEngine | None = bind if isinstance(bind, AsyncEngine) else None
        # On PostgreSQL, updates of different people in flight together share a transaction.
        self._group: GroupCommit | None = None
        if group_commit and self._engine is not None and self._engine.dialect.name == "postgresql":
            self._group = GroupCommit(
                self._engine, self._step_job, self._newcomer, identity.encrypt
            )
        self._identity = identity
        self._nlu = nlu
        # Other languages' pipelines, built on first use (None: no model for that language).
        self._nlu_for_language = nlu_for_language
        self._pipelines: dict[str, NluPipeline | None] = {nlu.language: nlu}
        self._default_language = default_language
        self._desk = desk
        self._languages = frozenset(languages())

    @property
    def group_commit(self) -> GroupCommit | None:
        """The shared-transaction batcher (PostgreSQL), with its counters; None elsewhere."""
        return self._group

    @property
    def engine(self) -> AsyncEngine | None:
        """The engine the sessions are bound to (None for a bare session factory)."""
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory (the volunteer desk shares it)."""
        return self._sessions

    @property
    def identity(self) -> Identity:
        """Pseudonyms and encryption (the volunteer desk shares them)."""
        return self._identity

    @property
    def nlu(self) -> NluPipeline:
        """The intent layer and safety net (the desk runs it on relayed messages)."""
        return self._nlu

    def language_for(self, language_code: str | None) -> str:
        """The catalogue language closest to the channel's hint (e.g. Telegram's 'en-GB')."""
        if language_code:
            short = language_code.split("-")[0].lower()
            if short in self._languages:
                return short
        return self._default_language

    async def handle(self, inbound: Inbound) -> Handled:
        """Handle one event; a database fault degrades to an apology, a crisis is still answered."""
        pseudonym = self._identity.pseudonym(inbound.channel, inbound.external_user)
        event = await self._event(inbound)
        if event.understanding is not None and event.understanding.is_crisis:
            metrics.crisis_detected(event.understanding.intent.name)
        try:
            return await self._handle_stored(inbound, pseudonym, event)
        except (SQLAlchemyError, OSError) as exc:
            log.error("storage unavailable for %s: %s", pseudonym[:12], type(exc).__name__)
            return Handled(self._degraded(inbound, event), pseudonym)

    def _pipeline(self, language_code: str | None) -> NluPipeline:
        """The NLU of the person's language when there is one, else the default."""
        short = (language_code or "").split("-")[0].lower()
        if not short or self._nlu_for_language is None:
            return self._nlu
        if short not in self._pipelines:
            self._pipelines[short] = self._nlu_for_language(short)
        return self._pipelines[short] or self._nlu

    async def _event(self, inbound: Inbound) -> Event:
        """The flows' view of the inbound event, with the NLU's understanding of free text."""
        understanding = None
        if inbound.kind is EventKind.TEXT and inbound.text.strip():
            understanding = await self._pipeline(inbound.language_code).parse(inbound.text)
        return Event(
            kind=inbound.kind,
            text=inbound.text,
            command=inbound.command,
            args=inbound.args,
            payload=inbound.payload,
            understanding=understanding,
            media=inbound.media,
            now=utcnow(),
        )

    async def _handle_stored(self, inbound: Inbound, pseudonym: str, event: Event) -> Handled:
        stepped: Handled | tuple[User | UserRow, Event, Outcome] | None = None
        if self._group is not None:
            stepped = await self._step_in_batch(inbound, pseudonym, event)
        if stepped is None:
            async with write_gate(self._engine):
                stepped = await self._step_rows(inbound, pseudonym, event)
                if stepped is None:
                    stepped = await self._step_orm(inbound, pseudonym, event)
        if isinstance(stepped, Handled):
            return stepped
        user, event, outcome = stepped
        if ExportData() in outcome.effects:
            outcome = replace(
                outcome, replies=outcome.replies + await self._export(user.id, user.language)
            )
        if ShowProgress() in outcome.effects:
            # Read-only, after the transaction: the person's row lock is not held while drawing.
            async with self._sessions() as session:
                shown = await progress_replies(
                    session,
                    user.id,
                    user.language,
                    user.recovery_start,
                    local_today(user.timezone),
                    user.timezone,
                )
            outcome = replace(outcome, replies=outcome.replies + shown)
        intent = event.intent or event.kind.value
        log.info("handled %s for %s -> %s", intent, pseudonym[:12], outcome.state.flow or "idle")
        return Handled(outcome.replies, pseudonym)

    async def _step_in_batch(
        self, inbound: Inbound, pseudonym: str, event: Event
    ) -> Handled | Stepped | None:
        """The update in a shared transaction (group commit); None: handle it on its own."""
        assert self._group is not None
        result = await self._group.run(
            pseudonym, inbound.bot_id, inbound.update_id, (inbound, event)
        )
        if isinstance(result, Locked):
            log.info("duplicate update for %s ignored", pseudonym[:12])
            return Handled((), pseudonym, duplicate=True)
        return result

    def _newcomer(self, job: tuple[Inbound, Event]) -> dict[str, Any]:
        """A first-contact person's row: their channel, language and where to reply."""
        inbound, _event = job
        return {
            "channel": inbound.channel,
            "language": self.language_for(inbound.language_code),
            "chat_ref": self._chat_ref(inbound),
        }

    async def _step_job(self, job: tuple[Inbound, Event], locked: Locked) -> Stepped:
        inbound, event = job
        return await self._step_locked(inbound, event, locked)

    async def _step_locked(self, inbound: Inbound, event: Event, locked: Locked) -> Stepped:
        """The flows' step for a person whose rows are locked (nothing written here)."""
        assert locked.user is not None and locked.state is not None
        user, stored = locked.user, locked.state
        # Encrypting is not free: only when the row has no chat to reply to yet.
        touch(user, self._chat_ref(inbound) if user.chat_ref is None else None)
        state = replace(stored.as_state(user), desk=self._desk)
        event = await self._in_persons_language(event, inbound, user.language)
        event = self._as_button_if_label(stored.offered(), event)
        return user, event, router.step(state, event)

    async def _step_rows(
        self, inbound: Inbound, pseudonym: str, event: Event
    ) -> Handled | Stepped | None:
        """The update's transaction in plain statements (no ORM objects on the way).

        None when this service has no engine, or the person's rows vanished between creating
        them and reading them (an erasure meanwhile): _step_orm handles those.
        """
        if self._engine is None:
            return None
        async with self._engine.connect() as conn:
            locked = await claim_and_lock(conn, inbound.bot_id, inbound.update_id, pseudonym)
            if locked is None:
                # First contact (or a person without a conversation row): undo the claim, create
                # the rows in their own transaction, and handle the update as for anyone.
                await conn.rollback()
                language = self.language_for(inbound.language_code)
                await create_person(
                    conn, pseudonym, inbound.channel, language, self._chat_ref(inbound)
                )
                await conn.commit()
                locked = await claim_and_lock(conn, inbound.bot_id, inbound.update_id, pseudonym)
            if locked is None:
                return None  # they were erased meanwhile: the ORM path starts them afresh
            if locked.user is None or locked.state is None:
                log.info("duplicate update for %s ignored", pseudonym[:12])
                return Handled((), pseudonym, duplicate=True)
            user, event, outcome = await self._step_locked(inbound, event, locked)
            await save_outcome_rows(conn, user, locked.state, outcome, self._identity.encrypt)
            await conn.commit()
        return user, event, outcome

    def _chat_ref(self, inbound: Inbound) -> str | None:
        return self._identity.encrypt(inbound.chat_id) if inbound.chat_id else None

    async def _step_orm(
        self, inbound: Inbound, pseudonym: str, event: Event
    ) -> Handled | tuple[User, Event, Outcome]:
        """The transaction with ORM objects (the fallback of _step_rows)."""
        async with self._sessions.begin() as session:
            if inbound.update_id is not None and not await claim_update(
                session, inbound.bot_id, inbound.update_id
            ):
                log.info("duplicate update for %s ignored", pseudonym[:12])
                return Handled((), pseudonym, duplicate=True)
            chat_ref = self._chat_ref(inbound)
            user = await get_or_create_user(
                session,
                pseudonym,
                inbound.channel,
                self.language_for(inbound.language_code),
                chat_ref,
            )
            state = replace(await load_state(session, user), desk=self._desk)
            event = await self._in_persons_language(event, inbound, user.language)
            offered = await offered_buttons(session, user.id)
            event = self._as_button_if_label(offered, event)
            outcome = router.step(state, event)
            await save_outcome(session, user, outcome, self._identity.encrypt)
        return user, event, outcome

    async def _in_persons_language(self, event: Event, inbound: Inbound, language: str) -> Event:
        """Free text read by the NLU of the language the person chose (/language).

        The text was parsed before the transaction by the NLU that the channel's hint picked;
        that is the person's language for nearly everyone, so nothing more happens. When they
        chose another one, it is parsed again by theirs. A crisis seen by either stays one.
        """
        first = event.understanding
        if first is None or first.is_crisis:
            return event
        pipeline = self._pipeline(language)
        if pipeline is self._pipeline(inbound.language_code):
            return event
        again = await pipeline.parse(event.text)
        if again.is_crisis:
            metrics.crisis_detected(again.intent.name)
        return replace(event, understanding=again)

    def _as_button_if_label(self, offered: Mapping[str, str], event: Event) -> Event:
        """Typing a button's exact label ("Done", "Skip") is a press, not free text.

        A classifier may read a bare "done" as "I'm done"; on screen next to a Done button it
        is the button. The safety net's lexicon still wins: a label that matches crisis
        wording (none of ours does) stays a crisis message.
        """
        if event.kind is not EventKind.TEXT:
            return event
        payload = offered.get(event.text.strip().casefold())
        if payload is None or self._nlu.lexicon_says_crisis(event.text):
            return event
        return Event(kind=EventKind.BUTTON, payload=payload, text=event.text)

    async def _export(self, user_id: str, lang: str) -> tuple[Reply, ...]:
        """The person's data as a JSON file (read after the transaction that asked for it)."""
        async with self._sessions() as session:
            data = await export_person(session, user_id, self._identity.decrypt)
        if data is None:
            return (Reply(text(lang, "privacy.export_nothing")),)
        document = (EXPORT_FILE_NAME, export_file(data))
        return (Reply(text(lang, "privacy.export_caption"), document=document),)

    async def followup(
        self, pseudonym: str, kind: str, details: Mapping[str, Any] | None = None
    ) -> tuple[Reply, ...]:
        """A scheduled follow-up came due: the flows say what to send (nothing if unknown)."""
        event = Event(
            kind=EventKind.FOLLOWUP, payload=kind, now=utcnow(), details=dict(details or {})
        )
        async with self._sessions.begin() as session:
            user = await session.get(User, pseudonym, with_for_update=True)
            if user is None or not user.active:
                return ()
            state = replace(await load_state(session, user), desk=self._desk)
            outcome = router.step(state, event)
            await save_outcome(session, user, outcome, self._identity.encrypt)
        log.info("follow-up %s for %s", kind, pseudonym[:12])
        return outcome.replies

    def _degraded(self, inbound: Inbound, event: Event) -> tuple[Reply, ...]:
        """Without the database: a crisis still gets its full answer; anything else an apology."""
        person = Person(language=self.language_for(inbound.language_code), onboarded=True)
        if event.understanding is not None and event.understanding.is_crisis:
            outcome: Outcome = router.step(State(person=person), event)
            return outcome.replies
        return (Reply(text(person.language, "fallback.trouble")),)
