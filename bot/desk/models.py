"""The desk's tables, beside bot.db.models (same metadata). Both hang off `escalations` with
ON DELETE CASCADE, so erasing a person (which deletes their escalations) erases these rows too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.models import Base, Escalation


def _escalation_fk() -> ForeignKey:
    """A reference to an escalation that goes when the escalation goes (erasure included)."""
    return ForeignKey("escalations.id", ondelete="CASCADE")


class DeskTicket(Base):
    """The desk's side of one escalation: its card, pings, time to claim, the person's answers."""

    __tablename__ = "desk_tickets"

    escalation_id: Mapped[int] = mapped_column(Integer, _escalation_fk(), primary_key=True)
    # Set when an announcement starts; a stale one without announced_at is retried.
    announce_started_at: Mapped[datetime | None]
    announced_at: Mapped[datetime | None]
    announced_priority: Mapped[int] = mapped_column(Integer)
    card_message_id: Mapped[int | None] = mapped_column(BigInteger)
    pings: Mapped[int] = mapped_column(Integer, default=0)
    last_ping_at: Mapped[datetime | None]
    # Seconds from the request to the claim: how coordinators read the desk's responsiveness.
    claim_seconds: Mapped[int | None] = mapped_column(Integer)
    check_back: Mapped[bool] = mapped_column(Boolean, default=False)
    awaiting_report: Mapped[bool] = mapped_column(Boolean, default=False)
    reported_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(80))


class DeskTranscriptLine(Base):
    """One relayed message, kept only when the deployment enables transcripts (encrypted)."""

    __tablename__ = "desk_transcript_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(Integer, _escalation_fk(), index=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    sender: Mapped[str] = mapped_column(String(16))  # "person" or "volunteer"
    body_encrypted: Mapped[str] = mapped_column(Text)


# A volunteer's message arrives with its topic id: find the escalation by it without a scan.
Index("ix_escalations_topic_id", Escalation.__table__.c.topic_id)
