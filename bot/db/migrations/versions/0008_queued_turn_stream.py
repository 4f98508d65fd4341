"""The streamed message of a queued turn's answer, so a redo can replace it (issue 11).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queuedturn", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stream_ts", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queuedturn", schema=None) as batch_op:
        batch_op.drop_column("stream_ts")
