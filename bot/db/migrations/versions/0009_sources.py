"""The non-public sources a stored reply (and a run) drew on: later turns keep treating the reply
as such, and "Show steps" shows a run's values only to people who may read them (issue 23).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("message", "run"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("sources", sa.String(), nullable=True))


def downgrade() -> None:
    for table in ("message", "run"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("sources")
