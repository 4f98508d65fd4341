"""The processed-event table goes: since 0012 a delivery is deduped by its job's key (and the
door's inbox row), and nothing writes the table any more.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("processedevent")  # its created_at index goes with it


def downgrade() -> None:
    op.create_table(
        "processedevent",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("processedevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processedevent_created_at"), ["created_at"], unique=False)
