"""Grid workspaces (team -> enterprise, for org-wide installs) and assistant contexts keyed by
workspace (team, channel, thread) instead of (channel, thread) (issue 24).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "id, team_id, channel_id, thread_ts, viewed_channel_id, updated_at"


def _contexts_table(name: str, *, by_workspace: bool) -> None:
    """The table is rebuilt rather than altered: 0005's unique key has no name to drop by, on
    SQLite or PostgreSQL alike."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=not by_workspace),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("viewed_channel_id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(*(("team_id",) if by_workspace else ()), "channel_id", "thread_ts"),
    )


def _renumber(table: str) -> None:
    """PostgreSQL: the rebuilt table's id sequence starts after the copied rows."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )


def upgrade() -> None:
    op.create_table(
        "gridworkspace",
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
    )
    with op.batch_alter_table("gridworkspace", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gridworkspace_enterprise_id"), ["enterprise_id"], unique=False)
    _contexts_table("assistantcontext_new", by_workspace=True)
    op.execute(
        f"INSERT INTO assistantcontext_new ({COLUMNS}) SELECT id, COALESCE(team_id, ''), channel_id, "
        "thread_ts, viewed_channel_id, updated_at FROM assistantcontext"
    )
    op.drop_table("assistantcontext")
    op.rename_table("assistantcontext_new", "assistantcontext")
    _renumber("assistantcontext")


def downgrade() -> None:
    _contexts_table("assistantcontext_old", by_workspace=False)
    # (channel, thread) is unique again: of rows that now clash, the newest saved one is kept.
    op.execute(
        f"INSERT INTO assistantcontext_old ({COLUMNS}) SELECT id, NULLIF(team_id, ''), channel_id, "
        "thread_ts, viewed_channel_id, updated_at FROM assistantcontext WHERE id IN "
        "(SELECT MAX(id) FROM assistantcontext GROUP BY channel_id, thread_ts)"
    )
    op.drop_table("assistantcontext")
    op.rename_table("assistantcontext_old", "assistantcontext")
    _renumber("assistantcontext")
    with op.batch_alter_table("gridworkspace", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gridworkspace_enterprise_id"))
    op.drop_table("gridworkspace")
