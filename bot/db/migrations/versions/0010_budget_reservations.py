"""Budget reservations: tokens a run in flight holds against the daily caps (issue 23).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budgetreservation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("budgetreservation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budgetreservation_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_budgetreservation_team_id"), ["team_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("budgetreservation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budgetreservation_team_id"))
        batch_op.drop_index(batch_op.f("ix_budgetreservation_created_at"))
    op.drop_table("budgetreservation")
