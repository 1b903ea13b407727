"""The volunteer desk on Telegram: forum topics per request, claims, and the two-way relay.

Handler groups (python-telegram-bot runs lower groups first):
  DESK_GROUP (-1)  everything the desk owns: the desk chat, other groups (left at once),
                   volunteer commands, the desk's buttons, and a connected person's messages.
                   Handled updates stop there (ApplicationHandlerStop), so they never reach
                   the person pipeline in group 0.
  AFTER_GROUP (1)  after the person pipeline: a request it just opened is announced at once.
A repeating job (the sweep) announces anything missed (restarts, several workers), raises
priorities, re-pings unclaimed requests and purges expired transcripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram import (
    User as TelegramUser,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    ContextTypes,
    JobQueue,
    TypeHandler,
)

from bot.config import Settings
from bot.db.models import Escalation, User, Volunteer
from bot.desk import store
from bot.desk.config import DeskSettings
from bot.desk.masking import Masked, hidden_contact, mask_contacts
from bot.desk.models import DeskTicket, DeskTranscriptLine
from bot.desk.names import friendly_name
from bot.desk.summary import (
    build_card,
    card_text,
    desk_plural,
    desk_text,
    escape,
    reason_label,
    topic_title,
)
from bot.identity import Identity
from bot.inbound import Inbound
from bot.rendering import split_for_telegram
from bot.repository import claim_update, load_state, save_outcome, utcnow
from bot.service import KindredService
from flows import peer
from flows.engine import EventKind, Outcome, Reply, State
from flows.resources import directory
from nlu.pipeline import NluPipeline

log = logging.getLogger(__name__)

DESK_GROUP = -1
AFTER_GROUP = 1
CLAIM = re.compile(r"claim:(\d{1,12}):([0-9a-f]{16})")
MAC_LENGTH = 16
# Requests the person made themselves hear about waits; the others (a lapse, a strong craving,
# a crisis) are offers of outreach: the person hears from the desk only when a volunteer comes.
ASKED_REASONS = frozenset({peer.REASON, "checkup"})
STALE_ANNOUNCEMENT = timedelta(seconds=60)
TOPIC_COLORS = {0: 0xFB6F5F, 1: 0xFFD67E}
DEFAULT_TOPIC_COLOR = 0x6FB9F0
CAPTION_LIMIT = 1024
# Room for the volunteer's name and for escaping (&, <, > grow) within Telegram's 4096.
TEXT_PART = 3000
# Content that is passed on as a copy; a caption can carry the volunteer's name on these.
RELAYED_MEDIA = (
    "photo",
    "voice",
    "video",
    "audio",
    "document",
    "animation",
    "sticker",
    "video_note",
)
CAPTIONED = frozenset({"photo", "voice", "video", "audio", "document", "animation"})
# Never passed on: each one points at a place or a phone number.
IDENTIFYING = ("location", "venue", "contact")
VOLUNTEER_COMMANDS = frozenset({"onshift", "offshift", "queue", "suspend", "reinstate", "stats"})
COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@(\w+))?(?=\s|$)")
STATS_DAYS = 7
SWEEP_JOB = "volunteer-desk-sweep"


def command_of(message: Message, bot_username: str | None) -> tuple[str, str] | None:
    """('queue', 'args') when a message is a command for this bot (not /cmd@another_bot)."""
    match = COMMAND.match(message.text or "")
    if match is None:
        return None
    addressed = match.group(2)
    if addressed and bot_username and addressed.lower() != bot_username.lower():
        return None
    return match.group(1).lower(), (message.text or "")[match.end() :].strip()


def media_kind(message: Message) -> str | None:
    """The kind of non-text content a message carries, if any."""
    for kind in (*IDENTIFYING, *RELAYED_MEDIA):
        if getattr(message, kind, None):
            return kind
    return None


def entity_pairs(message: Message) -> list[tuple[str, str | None]]:
    """(type, url) of a message's text or caption entities."""
    entities = message.entities or message.caption_entities or ()
    return [(str(e.type), e.url) for e in entities]


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Inline buttons for a flow's reply."""
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b.label, callback_data=b.payload) for b in row]
            for row in reply.buttons
        ]
    )


@dataclass(frozen=True)
class Announcement:
    """What the reservation found: a new card to post, or a priority that rose since."""

    escalation_id: int
    user_id: str
    title: str
    raised: bool
    first_try: bool
    card: str
    topic_id: int | None
    priority: int
    reason: str
    asked: bool
    on_shift: int
    wait_minutes: int


class Desk:
    """The desk's handlers and sweep, over the same database and identity as the service."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int | None,
        settings: DeskSettings,
        *,
        sessions: async_sessionmaker[AsyncSession],
        identity: Identity,
        nlu: NluPipeline,
        service: KindredService,
    ) -> None:
        """Keep the shared pieces; nothing runs until the handlers and the sweep are added."""
        self.bot = bot
        self.chat_id = chat_id
        self.settings = settings
        self._sessions = sessions
        self._identity = identity
        self._nlu = nlu
        self._service = service
        # One announcer per process; across processes the desk_tickets primary key decides.
        self._announcing = asyncio.Lock()
        self._sweeping = asyncio.Lock()

    # -- entry points ---------------------------------------------------------------------------

    async def before_person(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Group -1: take what belongs to the desk and stop it there; let the rest through."""
        chat = update.effective_chat
        if chat is None:
            return
        if chat.type != Chat.PRIVATE:
            if self.chat_id is not None and chat.id == self.chat_id:
                await self._desk_update(update)
            else:
                await self._leave(chat.id)
            raise ApplicationHandlerStop
        user = update.effective_user
        if user is None or user.is_bot:
            return
        if await self._private_update(update, user):
            raise ApplicationHandlerStop

    async def after_person(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Group 1: announce a request the person pipeline has just opened, without waiting."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or chat.type != Chat.PRIVATE or user.is_bot:
            return
        await self.announce_pending(self._identity.pseudonym(store.PERSON_CHANNEL, user.id))

    async def sweep(self) -> None:
        """Announce, re-ping, purge: one pass. Safe to run in several processes at once."""
        async with self._sweeping:
            try:
                await self.announce_pending()
                await self._ping_unclaimed()
                await self._purge_transcripts()
            except (SQLAlchemyError, OSError) as exc:
                log.error("desk sweep failed: %s", type(exc).__name__)

    def schedule_sweeps(self, job_queue: JobQueue[Any]) -> None:
        """Sweep every `sweep_seconds`, one pass at a time.

        Each pass schedules the next when it ends, rather than a fixed interval: a pass held up
        by Telegram's 20-messages-a-minute limit for one group never overlaps the next.
        """
        job_queue.run_once(self._sweep_job, when=self.settings.sweep_seconds, name=SWEEP_JOB)

    async def _sweep_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One sweep, then the next one scheduled (even after a failure)."""
        try:
            await self.sweep()
        finally:
            if context.job_queue is not None:
                self.schedule_sweeps(context.job_queue)

    # -- announcing requests --------------------------------------------------------------------

    async def announce_pending(self, user_id: str | None = None) -> None:
        """Post every request not yet on the desk (or whose priority rose), most urgent first."""
        async with self._sessions() as session:
            pending = await store.pending_announcements(
                session, utcnow(), STALE_ANNOUNCEMENT, user_id
            )
        for escalation_id in pending:
            await self.announce(escalation_id)

    async def announce(self, escalation_id: int) -> None:
        """Tell the person where they stand, then open the topic with its card and Claim button."""
        async with self._announcing:
            found = await self._reserve(escalation_id)
            if found is None:
                return
            if found.raised:
                await self._raise_priority(found)
                return
            if found.first_try and found.asked:
                # Before the card: a claim can then never arrive ahead of this notice.
                if found.on_shift and self.chat_id is not None:
                    minutes = found.wait_minutes
                    await self._moment(
                        found.user_id, lambda s: peer.queued(s, escalation_id, minutes)
                    )
                else:
                    await self._moment(
                        found.user_id, lambda s: peer.nobody_on_shift(s, escalation_id)
                    )
            topic_id, card_id = await self._post_card(found)
            if self.chat_id is not None and topic_id is None:
                return  # Telegram refused; the sweep retries once the reservation is stale
            now = utcnow()
            async with self._sessions.begin() as session:
                escalation = await session.get(Escalation, escalation_id)
                ticket = await session.get(DeskTicket, escalation_id)
                if escalation is None or ticket is None:
                    return
                escalation.topic_id = topic_id
                ticket.card_message_id = card_id
                ticket.announced_at = now
                ticket.last_ping_at = now
        log.info("desk: ticket %s announced (P%s)", escalation_id, found.priority)

    async def _reserve(self, escalation_id: int) -> Announcement | None:
        """Claim the right to announce (a ticket row), and read what the card needs."""
        now = utcnow()
        async with self._sessions.begin() as session:
            escalation = await session.get(Escalation, escalation_id)
            if escalation is None or escalation.status != store.OPEN:
                return None
            user = await session.get(User, escalation.user_id)
            if user is None or user.chat_ref is None:
                return None
            ticket = await session.get(DeskTicket, escalation_id)
            raise_only = Announcement(
                escalation_id=escalation_id,
                user_id=user.id,
                title=topic_title(escalation.id, escalation.priority, escalation.reason),
                raised=True,
                first_try=False,
                card="",
                topic_id=escalation.topic_id,
                priority=escalation.priority,
                reason=escalation.reason,
                asked=escalation.reason in ASKED_REASONS,
                on_shift=0,
                wait_minutes=0,
            )
            if ticket is not None and ticket.announced_at is not None:
                raised = await session.execute(
                    update(DeskTicket)
                    .where(
                        DeskTicket.escalation_id == escalation_id,
                        DeskTicket.announced_priority == ticket.announced_priority,
                        DeskTicket.announced_priority > escalation.priority,
                    )
                    .values(announced_priority=escalation.priority, last_ping_at=now)
                )
                if store.rowcount(raised) != 1:
                    return None
                return raise_only
            if await self._already_connected(session, escalation):
                # A crisis message while a volunteer is with the person: the relay has already
                # alerted the topic; a second topic would split the conversation.
                escalation.status, escalation.closed_at = store.MERGED, now
                return None
            if ticket is None:
                try:
                    async with session.begin_nested():
                        session.add(
                            DeskTicket(
                                escalation_id=escalation_id,
                                announce_started_at=now,
                                announced_priority=escalation.priority,
                                pings=0,
                                check_back=False,
                                awaiting_report=False,
                            )
                        )
                        await session.flush()
                except IntegrityError:
                    return None
            else:
                retried = await session.execute(
                    update(DeskTicket)
                    .where(
                        DeskTicket.escalation_id == escalation_id,
                        DeskTicket.announced_at.is_(None),
                        DeskTicket.announce_started_at == ticket.announce_started_at,
                    )
                    .values(announce_started_at=now, announced_priority=escalation.priority)
                )
                if store.rowcount(retried) != 1:
                    return None
            card = await build_card(session, escalation, user, now)
            return replace(
                raise_only,
                raised=False,
                first_try=ticket is None,
                card=card_text(card),
                topic_id=None,
                on_shift=await store.on_shift_count(session),
                wait_minutes=await store.expected_wait_minutes(
                    session, now, self.settings.default_wait_minutes
                ),
            )

    @staticmethod
    async def _already_connected(session: AsyncSession, escalation: Escalation) -> bool:
        """Whether a volunteer is already talking with this request's person."""
        other = await session.scalar(
            select(Escalation.id).where(
                Escalation.user_id == escalation.user_id,
                Escalation.status == store.CLAIMED,
                Escalation.id != escalation.id,
            )
        )
        return other is not None

    def _claim_markup(self, escalation_id: int) -> InlineKeyboardMarkup:
        """The Claim button (its label starts with "Claim")."""
        label = desk_text("desk.button_claim", ticket=escalation_id)
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(label, callback_data=self.claim_payload(escalation_id))]]
        )

    def claim_payload(self, escalation_id: int) -> str:
        """Claim button data, signed so a forged or altered press is recognised and refused."""
        return f"claim:{escalation_id}:{self._claim_mac(escalation_id)}"

    def _claim_mac(self, escalation_id: int) -> str:
        """A keyed hash of the ticket number: only this deployment can make a valid button."""
        return self._identity.pseudonym("desk-claim", escalation_id)[:MAC_LENGTH]

    async def _post_card(self, found: Announcement) -> tuple[int | None, int | None]:
        """Create the topic and post the card in it; (None, None) when there is no desk."""
        if self.chat_id is None:
            return None, None
        try:
            topic = await self.bot.create_forum_topic(
                self.chat_id,
                found.title,
                icon_color=TOPIC_COLORS.get(found.priority, DEFAULT_TOPIC_COLOR),
            )
            card = await self.bot.send_message(
                self.chat_id,
                found.card,
                parse_mode=ParseMode.HTML,
                message_thread_id=topic.message_thread_id,
                reply_markup=self._claim_markup(found.escalation_id),
            )
        except TelegramError as exc:
            log.error("desk: ticket %s not announced: %s", found.escalation_id, exc)
            return None, None
        return topic.message_thread_id, card.message_id

    async def _raise_priority(self, found: Announcement) -> None:
        """The person's request became more urgent (a crisis while waiting): say so on top."""
        if self.chat_id is None or found.topic_id is None:
            return
        try:
            await self.bot.edit_forum_topic(self.chat_id, found.topic_id, name=found.title)
        except BadRequest as exc:
            log.info("desk: topic of ticket %s not renamed: %s", found.escalation_id, exc)
        await self._to_topic(
            found.topic_id,
            desk_text(
                "desk.priority_raised", priority=found.priority, reason=reason_label(found.reason)
            ),
            markup=self._claim_markup(found.escalation_id),
        )

    # -- the sweep's other jobs -----------------------------------------------------------------

    async def _ping_unclaimed(self) -> None:
        """Unclaimed for a while: ping the desk again, and tell the person the expected wait."""
        now = utcnow()
        after = timedelta(minutes=self.settings.reping_minutes)
        async with self._sessions() as session:
            if not await store.on_shift_count(session):
                return  # nobody to ping; the person was told nobody is on shift
            due = await store.due_for_ping(session, now, after, self.settings.max_pings)
            wait = await store.expected_wait_minutes(
                session, now, self.settings.default_wait_minutes
            )
        for escalation_id in due:
            async with self._sessions.begin() as session:
                escalation = await session.get(Escalation, escalation_id)
                ticket = await session.get(DeskTicket, escalation_id)
                if escalation is None or ticket is None or escalation.topic_id is None:
                    continue
                taken = await session.execute(
                    update(DeskTicket)
                    .where(
                        DeskTicket.escalation_id == escalation_id, DeskTicket.pings == ticket.pings
                    )
                    .values(pings=ticket.pings + 1, last_ping_at=now)
                )
                if store.rowcount(taken) != 1:
                    continue  # another worker pinged it
                waited = (now - store.aware(escalation.created_at)).total_seconds()
                minutes = max(1, int(waited // 60))
                wait = await store.expected_wait_minutes(
                    session, now, self.settings.default_wait_minutes, waited
                )
                topic_id, user_id = escalation.topic_id, escalation.user_id
                asked = escalation.reason in ASKED_REASONS
                ping = desk_plural(
                    "desk.reping",
                    minutes,
                    ticket=escalation_id,
                    priority=escalation.priority,
                    reason=reason_label(escalation.reason),
                    minutes=minutes,
                )
            await self._to_topic(topic_id, ping, markup=self._claim_markup(escalation_id))
            if asked:
                await self._moment(user_id, partial(peer.still_waiting, minutes=wait))

    async def _purge_transcripts(self) -> None:
        """Transcript lines older than the retention period are deleted."""
        cutoff = utcnow() - timedelta(days=self.settings.transcript_retention_days)
        async with self._sessions.begin() as session:
            await session.execute(delete(DeskTranscriptLine).where(DeskTranscriptLine.at < cutoff))

    # -- the desk chat --------------------------------------------------------------------------

    async def _desk_update(self, update: Update) -> None:
        """Claims, commands and replies from the desk; anyone not an active volunteer is ignored."""
        user = update.effective_user
        if user is None or user.is_bot:
            return
        if update.callback_query is not None:
            await self._claim(update.callback_query, user)
            return
        message = update.message
        if message is None:
            return  # edits, joins, topic service messages: nothing to do
        volunteer = await self._volunteer(user.id)
        if volunteer is None or not volunteer.active:
            return
        thread = message.message_thread_id if message.is_topic_message else None
        command = command_of(message, self.bot.username)
        if command is not None and command[0] in VOLUNTEER_COMMANDS:
            await self._volunteer_command(volunteer, command, self.chat_id, thread)
            return
        if thread is None:
            return  # the General topic is the volunteers' own space
        if command is not None and command[0] == "end":
            await self._end_from_desk(volunteer, thread)
            return
        await self._relay_from_volunteer(update, message, volunteer, thread)

    async def _claim(self, query: CallbackQuery, user: TelegramUser) -> None:
        """A Claim press: signed data, an active on-shift volunteer, and still open."""
        match = CLAIM.fullmatch(query.data or "")
        if match is None:
            await self._answer(query)  # not one of ours: a desk press does nothing else
            return
        escalation_id = int(match.group(1))
        if not hmac.compare_digest(match.group(2), self._claim_mac(escalation_id)):
            await self._answer(query, desk_text("desk.claim_invalid"))
            return
        volunteer = await self._volunteer(user.id)
        if volunteer is None or not volunteer.active:
            await self._answer(query, desk_text("desk.claim_refused"))
            return
        if not volunteer.on_shift:
            await self._answer(query, desk_text("desk.claim_not_on_shift"))
            return
        now = utcnow()
        async with self._sessions.begin() as session:
            result = await store.claim(session, escalation_id, volunteer, now)
            person = topic_id = None
            connected: tuple[int, tuple[Reply, ...]] | None = None
            if result.outcome == "claimed" and result.escalation is not None:
                escalation = result.escalation
                person, topic_id = friendly_name(escalation.user_id), escalation.topic_id
                asked = escalation.reason in ASKED_REASONS
                connected = await self._moment_in(
                    session,
                    escalation.user_id,
                    lambda s: peer.connected(s, volunteer.display_name, asked=asked),
                )
        if result.outcome == "taken":
            await self._answer(query, desk_text("desk.claim_taken", volunteer=result.holder or "?"))
            return
        if result.outcome != "claimed":
            await self._answer(query, desk_text("desk.claim_closed"))
            return
        await self._answer(query, desk_text("desk.claim_yours", person=person))
        if query.message is not None:
            # A re-ping's button may already be gone: nothing to tidy then.
            with contextlib.suppress(BadRequest):
                await self.bot.edit_message_reply_markup(
                    query.message.chat.id, query.message.message_id, reply_markup=None
                )
        if topic_id is not None:
            await self._to_topic(
                topic_id,
                desk_text(
                    "desk.claimed",
                    volunteer=volunteer.display_name,
                    seconds=result.claim_seconds,
                    person=person,
                ),
            )
        if connected is not None:
            await self._send_replies(*connected)

    async def _relay_from_volunteer(
        self, update: Update, message: Message, volunteer: Volunteer, thread: int
    ) -> None:
        """The claiming volunteer's message goes to the person under the volunteer's name."""
        async with self._sessions.begin() as session:
            escalation = await session.scalar(
                select(Escalation)
                .where(Escalation.topic_id == thread)
                .order_by(Escalation.id.desc())
            )
            if escalation is None:
                return
            if escalation.status == store.OPEN:
                reply = desk_text("desk.claim_first")
            elif escalation.status != store.CLAIMED:
                return
            elif escalation.claimed_by != volunteer.id:
                holder = await session.get(Volunteer, escalation.claimed_by)
                reply = desk_text(
                    "desk.not_yours", volunteer=holder.display_name if holder else "?"
                )
            else:
                reply = ""
            fresh = not reply and await claim_update(session, self.bot.id, update.update_id)
            user = await session.get(User, escalation.user_id)
            chat_id = self._chat_of(user)
            person = friendly_name(escalation.user_id)
            region = self._region(user)
            escalation_id = escalation.id
        if reply:
            await self._to_topic(thread, reply)
            return
        if not fresh:
            return  # Telegram delivered this update twice; it was relayed the first time
        if chat_id is None:
            await self._to_topic(thread, desk_text("desk.person_gone", person=person))
            return
        kind = media_kind(message)
        if kind in IDENTIFYING:
            await self._to_topic(thread, desk_text("desk.not_relayed"))
            return
        header = f"<b>{escape(volunteer.display_name)}</b>"
        body = message.text if message.text is not None else message.caption
        masked = mask_contacts(body or "", region)
        hidden = hidden_contact(entity_pairs(message))
        try:
            if message.text is not None:
                # Split the plain text, then escape: escaping can only lengthen a part a little,
                # and a split never lands inside an HTML entity.
                for index, part in enumerate(split_for_telegram(masked.text, TEXT_PART)):
                    shown = f"{header}\n{escape(part)}" if index == 0 else escape(part)
                    await self.bot.send_message(
                        chat_id, shown, parse_mode=ParseMode.HTML, protect_content=True
                    )
            elif kind in CAPTIONED:
                # Cut the plain text, not the HTML: a cut entity would be rejected.
                room = CAPTION_LIMIT - len(volunteer.display_name) - 1
                caption = f"{header}\n{escape(masked.text[:room])}" if body else header
                await self.bot.copy_message(
                    chat_id,
                    message.chat.id,
                    message.message_id,
                    caption=caption,
                    parse_mode=ParseMode.HTML,
                    protect_content=True,
                )
            else:
                await self.bot.copy_message(
                    chat_id, message.chat.id, message.message_id, protect_content=True
                )
        except Forbidden:
            await self._to_topic(thread, desk_text("desk.person_gone", person=person))
            return
        except BadRequest as exc:
            log.info("desk: volunteer message on ticket %s not relayed: %s", escalation_id, exc)
            return
        if masked.changed or hidden:
            await self._to_topic(thread, desk_text("desk.masked"))
        async with self._sessions.begin() as session:
            store.audit(
                session,
                volunteer.display_name,
                "replied",
                store.ticket_ref(escalation_id),
                kind=kind or "text",
                masked=masked.changed or hidden,
            )
            self._transcribe(session, escalation_id, "volunteer", masked, kind)

    async def _end_from_desk(self, volunteer: Volunteer, thread: int) -> None:
        """/end in a topic: the claiming volunteer (or a coordinator) closes the conversation."""
        async with self._sessions() as session:
            escalation = await session.scalar(
                select(Escalation)
                .where(Escalation.topic_id == thread)
                .order_by(Escalation.id.desc())
            )
        if escalation is None or escalation.status not in (store.OPEN, store.CLAIMED):
            return
        allowed = escalation.status == store.CLAIMED and (
            volunteer.role == "coordinator" or escalation.claimed_by == volunteer.id
        )
        if not allowed:
            holder = await self._volunteer_by_id(escalation.claimed_by)
            note = (
                desk_text("desk.not_yours", volunteer=holder.display_name)
                if holder is not None
                else desk_text("desk.claim_first")
            )
            await self._to_topic(thread, note)
            return
        await self._close(escalation.id, by_person=False, actor=volunteer.display_name)

    # -- closing --------------------------------------------------------------------------------

    async def _close(
        self, escalation_id: int, *, by_person: bool, actor: str, declined: bool = False
    ) -> None:
        """End a conversation (or an unclaimed request): close the topic, ask the person to rate."""
        now = utcnow()
        async with self._sessions.begin() as session:
            escalation = await session.get(Escalation, escalation_id)
            if escalation is None:
                return
            await session.scalar(
                select(User.id).where(User.id == escalation.user_id).with_for_update()
            )
            was = escalation.status
            status = store.CLOSED if was == store.CLAIMED else store.WITHDRAWN
            done = await session.execute(
                update(Escalation)
                .where(Escalation.id == escalation_id, Escalation.status == was)
                .where(Escalation.status.in_((store.OPEN, store.CLAIMED)))
                .values(status=status, closed_at=now)
                .execution_options(synchronize_session=False)
            )
            if store.rowcount(done) != 1:
                return
            ticket = await session.get(DeskTicket, escalation_id)
            if ticket is not None:
                ticket.closed_by = actor
            holder = (
                await session.get(Volunteer, escalation.claimed_by)
                if was == store.CLAIMED
                else None
            )
            volunteer = holder.display_name if holder is not None else "?"
            person = friendly_name(escalation.user_id)
            store.audit(session, actor, "closed", store.ticket_ref(escalation_id), status=status)
            if status == store.CLOSED:
                reply = await self._moment_in(
                    session,
                    escalation.user_id,
                    lambda s: peer.ended(s, escalation_id, volunteer, by_person=by_person),
                )
            else:
                reply = await self._moment_in(
                    session,
                    escalation.user_id,
                    lambda s: peer.withdrawn(s, declined_check_back=declined),
                )
            topic_id = escalation.topic_id
            note = self._closing_note(escalation, ticket, now) if status == store.CLOSED else None
        if topic_id is not None:
            if status == store.WITHDRAWN:
                headline = desk_text("desk.withdrawn", person=person)
            elif by_person:
                headline = desk_text("desk.ended_by_person", person=person)
            else:
                headline = desk_text("desk.ended_by_volunteer", volunteer=actor)
            await self._to_topic(topic_id, headline + (f"\n{note}" if note else ""))
            await self._close_topic(topic_id)
        if reply is not None:
            await self._send_replies(*reply)

    @staticmethod
    def _closing_note(escalation: Escalation, ticket: DeskTicket | None, now: datetime) -> str:
        """Time to claim and the times behind it, posted when a conversation closes."""
        claimed = escalation.claimed_at
        return desk_text(
            "desk.closing_note",
            claim_seconds=ticket.claim_seconds
            if ticket and ticket.claim_seconds is not None
            else "?",
            opened=f"{store.aware(escalation.created_at):%H:%M:%S}",
            claimed=f"{store.aware(claimed):%H:%M:%S}" if claimed else "?",
            closed=f"{now:%H:%M:%S}",
        )

    async def _close_topic(self, topic_id: int) -> None:
        """closeForumTopic (already closed or deleted: nothing more to do)."""
        if self.chat_id is None:
            return
        try:
            await self.bot.close_forum_topic(self.chat_id, topic_id)
        except BadRequest as exc:
            log.info("desk: topic %s not closed: %s", topic_id, exc)

    # -- private chats --------------------------------------------------------------------------

    async def _private_update(self, update: Update, user: TelegramUser) -> bool:
        """A private update the desk handles (True), or one for the person pipeline (False)."""
        message = update.message
        command = command_of(message, self.bot.username) if message is not None else None
        if message is not None and command is not None:
            if command[0] == "volunteer":
                await self._redeem(message, user, command[1])
                return True
            if command[0] in VOLUNTEER_COMMANDS:
                volunteer = await self._volunteer(user.id)
                if volunteer is not None and volunteer.active:
                    await self._volunteer_command(volunteer, command, message.chat.id, None)
                    return True
        pseudonym = self._identity.pseudonym(store.PERSON_CHANNEL, user.id)
        query = update.callback_query
        if query is not None:
            if not (query.data or "").startswith(peer.DESK_PREFIX):
                return False
            await self._person_press(query, pseudonym)
            return True
        if message is None:
            return False
        try:
            async with self._sessions() as session:
                links = await store.person_links(session, pseudonym)
        except (SQLAlchemyError, OSError) as exc:
            # The pipeline has a degraded path (a crisis is still answered): let it through.
            log.error("desk: person links unavailable: %s", type(exc).__name__)
            return False
        claimed = next((link for link in links if link.status == store.CLAIMED), None)
        waiting = next((link for link in links if link.status == store.OPEN), None)
        reporting = next((link for link in links if link.awaiting_report), None)
        if command is not None and command[0] == "end" and (claimed or waiting):
            target = claimed or waiting
            assert target is not None
            await self._close(target.escalation_id, by_person=True, actor="person")
            return True
        if claimed is not None and command is None:
            await self._relay_from_person(update, message, user, pseudonym, claimed.escalation_id)
            return True
        if reporting is not None:
            if command is None and message.text:
                await self._report(pseudonym, reporting.escalation_id, message.text)
                return True
            await self._set_report(pseudonym, reporting.escalation_id, awaiting=False)
        return False

    async def _relay_from_person(
        self,
        update: Update,
        message: Message,
        user: TelegramUser,
        pseudonym: str,
        escalation_id: int,
    ) -> None:
        """The person's message goes into their topic as a copy; the safety net still listens."""
        async with self._sessions.begin() as session:
            if not await claim_update(session, self.bot.id, update.update_id):
                return
            escalation = await session.get(Escalation, escalation_id)
            person_row = await session.get(User, pseudonym)
            if escalation is None or person_row is None or escalation.topic_id is None:
                return
            state = await load_state(session, person_row)
            topic_id = escalation.topic_id
            region = self._region(person_row)
            holder = await session.get(Volunteer, escalation.claimed_by)
            volunteer = holder.display_name if holder is not None else "?"
        chat_id = message.chat.id
        kind = media_kind(message)
        if kind in IDENTIFYING:
            await self._send_replies(chat_id, peer.not_relayed(state).replies)
            return
        body = message.text if message.text is not None else message.caption
        masked = mask_contacts(body or "", region)
        rewrite = masked.changed or hidden_contact(entity_pairs(message))
        try:
            await self._copy_to_topic(message, topic_id, masked.text if rewrite else None)
        except TelegramError as exc:
            log.error("desk: person message on ticket %s not relayed: %s", escalation_id, exc)
        if rewrite:
            await self._send_replies(chat_id, peer.masked(state).replies)
        async with self._sessions.begin() as session:
            self._transcribe(session, escalation_id, "person", masked, kind)
        if body and (await self._nlu.parse(body)).is_crisis:
            await self._crisis_in_relay(update, user, body, escalation_id, topic_id, volunteer)

    async def _copy_to_topic(self, message: Message, topic_id: int, masked: str | None) -> None:
        """A copy (no "forwarded from"); re-sent as plain text when contact details were hidden."""
        assert self.chat_id is not None
        if message.text is not None and masked is not None:
            for part in split_for_telegram(masked):
                await self.bot.send_message(
                    self.chat_id, part, message_thread_id=topic_id, protect_content=True
                )
            return
        await self.bot.copy_message(
            self.chat_id,
            message.chat.id,
            message.message_id,
            message_thread_id=topic_id,
            caption=masked[:CAPTION_LIMIT] if masked is not None else None,
            protect_content=True,
        )

    async def _crisis_in_relay(
        self,
        update: Update,
        user: TelegramUser,
        body: str,
        escalation_id: int,
        topic_id: int,
        volunteer: str,
    ) -> None:
        """A crisis during a conversation: the person gets the crisis answer, the desk an alert."""
        chat = update.effective_chat
        assert chat is not None
        inbound = Inbound(
            channel=store.PERSON_CHANNEL,
            external_user=str(user.id),
            chat_id=str(chat.id),
            kind=EventKind.TEXT,
            text=body,
            language_code=user.language_code,
            bot_id=self.bot.id,
        )
        handled = await self._service.handle(inbound)
        await self._send_replies(chat.id, handled.replies)
        person = friendly_name(handled.pseudonym)
        await self._to_topic(topic_id, desk_text("desk.crisis_alert", person=person))
        await self._alert_coordinators(
            desk_text("desk.coordinator_crisis", ticket=escalation_id, volunteer=volunteer)
        )
        async with self._sessions.begin() as session:
            store.audit(session, "person", "crisis_alert", store.ticket_ref(escalation_id))
        # The crisis flow asked for a volunteer too; it joins this conversation, not a new one.
        await self.announce_pending(handled.pseudonym)

    async def _person_press(self, query: CallbackQuery, pseudonym: str) -> None:
        """The desk's buttons on the person's side: cancel, check-back, rating, report."""
        await self._answer(query)
        press = peer.parse_desk_payload(query.data)
        if press is None:
            return
        async with self._sessions.begin() as session:
            escalation = await session.get(Escalation, press.ticket)
            ticket = await session.get(DeskTicket, press.ticket)
            if escalation is None or ticket is None or escalation.user_id != pseudonym:
                return  # someone else's ticket, or a forged number: nothing happens
            status, rating = escalation.status, escalation.rating
            if press.action == "rate" and status == store.CLOSED and rating is None:
                escalation.rating = int(press.value or 0)
                ticket_id = press.ticket
                reply = await self._moment_in(
                    session, pseudonym, lambda s: peer.rated(s, ticket_id)
                )
            elif press.action == "report" and status == store.CLOSED and ticket.reported_at is None:
                ticket.awaiting_report = True
                ticket_id = press.ticket
                reply = await self._moment_in(
                    session, pseudonym, lambda s: peer.ask_report(s, ticket_id)
                )
            elif press.action == "cb" and status == store.OPEN and press.value == "yes":
                ticket.check_back = True
                reply = await self._moment_in(session, pseudonym, peer.check_back_set)
            else:
                reply = None
        if reply is not None:
            await self._send_replies(*reply)
        elif status == store.OPEN and (
            press.action == "cancel" or (press.action == "cb" and press.value == "no")
        ):
            declined = press.action == "cb"
            await self._close(press.ticket, by_person=True, actor="person", declined=declined)

    async def _set_report(self, pseudonym: str, escalation_id: int, *, awaiting: bool) -> None:
        """Start or stop waiting for the person's report on a ticket."""
        async with self._sessions.begin() as session:
            ticket = await session.get(DeskTicket, escalation_id)
            if ticket is not None:
                ticket.awaiting_report = awaiting

    async def _report(self, pseudonym: str, escalation_id: int, report: str) -> None:
        """The person's report goes to the coordinators (contact details hidden), not the topic."""
        now = utcnow()
        async with self._sessions.begin() as session:
            escalation = await session.get(Escalation, escalation_id)
            ticket = await session.get(DeskTicket, escalation_id)
            if escalation is None or ticket is None or escalation.user_id != pseudonym:
                return
            ticket.awaiting_report, ticket.reported_at = False, now
            holder = await session.get(Volunteer, escalation.claimed_by)
            rating = escalation.rating
            store.audit(session, "person", "reported", store.ticket_ref(escalation_id))
            reply = await self._moment_in(session, pseudonym, peer.report_received)
            user = await session.get(User, pseudonym)
            region = self._region(user)
        await self._alert_coordinators(
            desk_text(
                "desk.report_alert",
                ticket=escalation_id,
                volunteer=holder.display_name if holder is not None else "?",
                rating=rating if rating is not None else "-",
                report=mask_contacts(report, region).text,
            )
        )
        if reply is not None:
            await self._send_replies(*reply)

    # -- volunteers -----------------------------------------------------------------------------

    async def _redeem(self, message: Message, user: TelegramUser, code: str) -> None:
        """/volunteer CODE in a private chat: join the desk with a one-time code."""
        pseudonym = self._identity.pseudonym(store.VOLUNTEER_CHANNEL, user.id)
        chat_ref = self._identity.encrypt(str(message.chat.id))
        if not code:
            result = store.Redeemed("invalid")
        else:
            async with self._sessions.begin() as session:
                result = await store.redeem_invite(session, code, pseudonym, chat_ref)
                if result.outcome in ("joined", "promoted") and result.volunteer is not None:
                    store.audit(
                        session,
                        result.volunteer.display_name,
                        result.outcome,
                        None,
                        role=result.volunteer.role,
                    )
        with_code = bool(code)
        name = result.volunteer.display_name if result.volunteer is not None else ""
        if result.outcome == "joined" and result.volunteer is not None:
            if result.volunteer.role == "coordinator":
                reply = (
                    desk_text("desk.welcome", name=name)
                    + "\n"
                    + desk_text("desk.welcome_coordinator")
                )
            else:
                reply = desk_text("desk.welcome", name=name)
        elif result.outcome == "promoted":
            reply = desk_text("desk.promoted", name=name)
        elif result.outcome == "already":
            reply = desk_text("desk.already", name=name)
        elif result.outcome == "suspended":
            reply = desk_text("desk.suspended_self")
        else:
            reply = desk_text("desk.invite_invalid")
        if with_code:
            # The code is spent or wrong either way; it should not linger in the chat history.
            with contextlib.suppress(TelegramError):
                await message.delete()
        await self._say(message.chat.id, reply)

    async def _volunteer(self, telegram_id: int) -> Volunteer | None:
        """The volunteer behind a Telegram account, looked up by its pseudonym."""
        async with self._sessions() as session:
            return await store.volunteer_by_pseudonym(
                session, self._identity.pseudonym(store.VOLUNTEER_CHANNEL, telegram_id)
            )

    async def _volunteer_by_id(self, volunteer_id: int | None) -> Volunteer | None:
        """A volunteer by row id (None for None)."""
        if volunteer_id is None:
            return None
        async with self._sessions() as session:
            return await session.get(Volunteer, volunteer_id)

    async def _volunteer_command(
        self,
        volunteer: Volunteer,
        command: tuple[str, str],
        chat_id: int | None,
        thread: int | None,
    ) -> None:
        """/onshift, /offshift, /queue; coordinators: /suspend, /reinstate, /stats."""
        name, args = command
        if chat_id is None:
            return
        if name in ("onshift", "offshift"):
            reply = await self._shift(volunteer, on=name == "onshift")
        elif name == "queue":
            reply = await self._queue_text()
        elif volunteer.role != "coordinator":
            reply = desk_text("desk.coordinator_only")
        elif name == "stats":
            reply = await self._stats_text(args)
        else:
            reply = await self._suspend(volunteer, args, suspend=name == "suspend")
        await self._say(chat_id, reply, thread)

    async def _shift(self, volunteer: Volunteer, *, on: bool) -> str:
        """Going on or off shift; the first one on opens the desk for people waiting on it."""
        async with self._sessions.begin() as session:
            before = await store.on_shift_count(session)
            row = await session.get(Volunteer, volunteer.id)
            if row is None:
                return ""
            row.on_shift = on
            store.audit(session, row.display_name, "on_shift" if on else "off_shift", None)
        if on and before == 0:
            await self._desk_opened()
        if on:
            return (
                desk_text("desk.on_shift", name=volunteer.display_name)
                + "\n\n"
                + (await self._queue_text())
            )
        return desk_text("desk.off_shift", name=volunteer.display_name)

    async def _desk_opened(self) -> None:
        """Tell people who asked for a check-back; restart the re-ping clock for everyone."""
        now = utcnow()
        async with self._sessions.begin() as session:
            waiting = list(
                await session.execute(
                    select(Escalation.user_id, DeskTicket)
                    .join(DeskTicket, DeskTicket.escalation_id == Escalation.id)
                    .where(Escalation.status == store.OPEN)
                )
            )
            told = []
            for user_id, ticket in waiting:
                ticket.last_ping_at = now
                if ticket.check_back:
                    ticket.check_back = False
                    told.append(user_id)
        for user_id in told:
            await self._moment(user_id, peer.desk_open)

    async def _queue_text(self) -> str:
        """Open requests, most urgent first, then the longest waiting."""
        now = utcnow()
        async with self._sessions() as session:
            queue = await store.open_queue(session)
            claimed = await store.claimed_count(session)
            on_shift = await store.on_shift_count(session)
        lines = [desk_text("desk.queue_heading")] if queue else [desk_text("desk.queue_empty")]
        for escalation in queue:
            waited = int((now - store.aware(escalation.created_at)).total_seconds() // 60)
            lines.append(
                desk_plural(
                    "desk.queue_line",
                    waited,
                    ticket=escalation.id,
                    priority=escalation.priority,
                    reason=reason_label(escalation.reason),
                    minutes=waited,
                )
            )
        lines.append(desk_text("desk.queue_footer", claimed=claimed, on_shift=on_shift))
        return "\n".join(lines)

    async def _stats_text(self, args: str) -> str:
        """Time to claim and the rest, for coordinators (default: the last 7 days)."""
        days = int(args) if args.isdigit() and 0 < int(args) <= 365 else STATS_DAYS
        async with self._sessions() as session:
            figures = await store.claim_stats(session, utcnow() - timedelta(days=days))
        shown = {key: "-" if value is None else value for key, value in figures.items()}
        return desk_plural("desk.stats", days, days=days, **shown)

    async def _suspend(self, coordinator: Volunteer, args: str, *, suspend: bool) -> str:
        """Suspend (or reinstate) a volunteer by desk name; their open conversations go back."""
        if not args.strip():
            return desk_text("desk.who")
        released: list[tuple[int, int | None, str]] = []
        async with self._sessions.begin() as session:
            target = await store.volunteer_named(session, args)
            if target is None:
                return desk_text("desk.unknown_volunteer", name=args.strip())
            target.active = not suspend
            target.on_shift = False
            store.audit(
                session,
                coordinator.display_name,
                "suspended" if suspend else "reinstated",
                f"volunteer:{target.display_name}",
            )
            if suspend:
                released = await self._release(session, target)
            name = target.display_name
        for escalation_id, topic_id, _user_id in released:
            if topic_id is not None:
                await self._to_topic(
                    topic_id,
                    desk_text("desk.released", volunteer=name),
                    markup=self._claim_markup(escalation_id),
                )
        for _escalation_id, _topic_id, user_id in released:
            await self._moment(user_id, lambda s: peer.volunteer_left(s, name))
        key = "desk.suspended" if suspend else "desk.reinstated"
        return desk_text(key, name=name)

    @staticmethod
    async def _release(
        session: AsyncSession, volunteer: Volunteer
    ) -> list[tuple[int, int | None, str]]:
        """The suspended volunteer's conversations go back into the queue."""
        held = list(
            await session.scalars(
                select(Escalation).where(
                    Escalation.claimed_by == volunteer.id, Escalation.status == store.CLAIMED
                )
            )
        )
        now = utcnow()
        for escalation in held:
            escalation.status, escalation.claimed_by, escalation.claimed_at = store.OPEN, None, None
            ticket = await session.get(DeskTicket, escalation.id)
            if ticket is not None:
                ticket.last_ping_at, ticket.pings, ticket.claim_seconds = now, 0, None
        return [(e.id, e.topic_id, e.user_id) for e in held]

    # -- sending --------------------------------------------------------------------------------

    async def _moment(self, user_id: str, make: Callable[[State], Outcome]) -> None:
        """A desk moment of the person's flow in its own transaction, then its replies."""
        async with self._sessions.begin() as session:
            reply = await self._moment_in(session, user_id, make)
        if reply is not None:
            await self._send_replies(*reply)

    async def _moment_in(
        self, session: AsyncSession, user_id: str, make: Callable[[State], Outcome]
    ) -> tuple[int, tuple[Reply, ...]] | None:
        """Step the person's flow for a desk moment and save its state (the caller sends)."""
        user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
        chat_id = self._chat_of(user)
        if user is None or chat_id is None:
            return None
        state = await load_state(session, user)
        outcome = make(state)
        if outcome.state != state:
            await save_outcome(session, user, outcome, self._identity.encrypt)
        return chat_id, outcome.replies

    def _chat_of(self, user: User | None) -> int | None:
        """The person's chat id, decrypted only to send (never stored or logged in clear)."""
        if user is None or user.channel != store.PERSON_CHANNEL:
            return None
        return self._decrypt_chat(user.chat_ref)

    def _decrypt_chat(self, chat_ref: str | None) -> int | None:
        """A stored, encrypted chat id (a person's or a volunteer's), or None."""
        if chat_ref is None:
            return None
        try:
            return int(self._identity.decrypt(chat_ref))
        except ValueError:
            return None

    @staticmethod
    def _region(user: User | None) -> str | None:
        """The ISO code of the person's country, to read local phone numbers."""
        record = directory().record(user.country) if user is not None and user.country else None
        return record.code if record is not None else None

    async def _send_replies(self, chat_id: int, replies: Sequence[Reply]) -> None:
        """A flow's replies to a person (blocked: logged, nothing else to do)."""
        try:
            for reply in replies:
                parts = split_for_telegram(reply.text)
                for index, part in enumerate(parts):
                    markup = keyboard(reply) if index == len(parts) - 1 else None
                    await self.bot.send_message(
                        chat_id, part, parse_mode=ParseMode.HTML, reply_markup=markup
                    )
        except Forbidden:
            log.info("desk: a person has blocked the bot")
        except BadRequest as exc:
            log.error("desk: reply rejected by Telegram: %s", exc.message)

    async def _say(self, chat_id: int, text: str, thread: int | None = None) -> None:
        """One desk message to a volunteer, a coordinator or a topic; failures are logged."""
        try:
            await self.bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, message_thread_id=thread
            )
        except TelegramError as exc:
            log.info("desk: message not sent: %s", type(exc).__name__)

    async def _to_topic(
        self, topic_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """A message in a ticket's topic (with a button, e.g. Claim)."""
        if self.chat_id is None:
            return
        try:
            await self.bot.send_message(
                self.chat_id,
                text,
                parse_mode=ParseMode.HTML,
                message_thread_id=topic_id,
                reply_markup=markup,
            )
        except TelegramError as exc:
            log.info("desk: topic %s message not sent: %s", topic_id, type(exc).__name__)

    async def _alert_coordinators(self, text: str) -> None:
        """Every active coordinator, privately; the desk's General topic when there are none."""
        async with self._sessions() as session:
            chats = [
                c
                for c in (self._decrypt_chat(v.chat_ref) for v in await store.coordinators(session))
                if c
            ]
        if not chats and self.chat_id is not None:
            chats = [self.chat_id]
        for chat_id in chats:
            await self._say(chat_id, text)

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None = None) -> None:
        """Answer every press (the button stops spinning), with a short note when useful."""
        with contextlib.suppress(TelegramError):
            await query.answer(text=text, show_alert=bool(text))

    async def _leave(self, chat_id: int) -> None:
        """Any group other than the desk: the bot does not stay where people could be exposed."""
        try:
            await self.bot.leave_chat(chat_id)
        except TelegramError as exc:
            log.info("desk: could not leave a group: %s", type(exc).__name__)
        else:
            log.warning("desk: left a group that is not the volunteer desk")

    def _transcribe(
        self,
        session: AsyncSession,
        escalation_id: int,
        sender: str,
        masked: Masked,
        kind: str | None,
    ) -> None:
        """Keep an encrypted line only when the deployment enabled transcripts (off by default)."""
        if not self.settings.store_transcripts:
            return
        body = masked.text or ""
        if kind is not None:
            body = f"[{kind}] {body}".strip()
        session.add(
            DeskTranscriptLine(
                escalation_id=escalation_id,
                sender=sender,
                body_encrypted=self._identity.encrypt(body),
            )
        )


def register_desk(
    application: Application[Any, Any, Any, Any, Any, Any],
    settings: Settings,
    *,
    service: KindredService,
    sessions: async_sessionmaker[AsyncSession],
    identity: Identity,
    nlu: NluPipeline,
    desk_settings: DeskSettings | None = None,
) -> Desk:
    """Add the desk's handlers (before and after the person pipeline) and its sweep job."""
    desk = Desk(
        application.bot,
        settings.volunteer_chat_id,
        desk_settings or DeskSettings(),
        sessions=sessions,
        identity=identity,
        nlu=nlu,
        service=service,
    )
    application.add_handler(TypeHandler(Update, desk.before_person), group=DESK_GROUP)
    application.add_handler(TypeHandler(Update, desk.after_person), group=AFTER_GROUP)
    if application.job_queue is None:
        raise RuntimeError("the volunteer desk needs python-telegram-bot's JobQueue (APScheduler)")
    desk.schedule_sweeps(application.job_queue)
    return desk
