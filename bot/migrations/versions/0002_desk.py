"""volunteer desk: tickets, transcripts, escalations by topic

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "desk_tickets",
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("announce_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced_priority", sa.Integer(), nullable=False),
        sa.Column("card_message_id", sa.BigInteger(), nullable=True),
        sa.Column("pings", sa.Integer(), nullable=False),
        sa.Column("last_ping_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_seconds", sa.Integer(), nullable=True),
        sa.Column("check_back", sa.Boolean(), nullable=False),
        sa.Column("awaiting_report", sa.Boolean(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_desk_tickets_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("escalation_id", name=op.f("pk_desk_tickets")),
    )
    op.create_table(
        "desk_transcript_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("body_encrypted", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_desk_transcript_lines_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_transcript_lines")),
    )
    with op.batch_alter_table("desk_transcript_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_transcript_lines_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_desk_transcript_lines_escalation_id"), ["escalation_id"], unique=False
        )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index("ix_escalations_topic_id", ["topic_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_topic_id")
    with op.batch_alter_table("desk_transcript_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_transcript_lines_escalation_id"))
        batch_op.drop_index(batch_op.f("ix_desk_transcript_lines_at"))
    op.drop_table("desk_transcript_lines")
    op.drop_table("desk_tickets")
