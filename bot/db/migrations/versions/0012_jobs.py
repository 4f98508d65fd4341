"""One table for all durable work (issue 22): turns, slash commands, digest fire times and
approvals become jobs of bot/work; the queued-turn, command-job and lease tables go.

Work still unfinished at the upgrade is carried over as pending jobs, so an upgrade during
traffic loses nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = ("pending", "running")


def upgrade() -> None:
    job = op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("person", sa.String(length=80), nullable=True),
        sa.Column("payload", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=False),
        sa.Column("progress", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_job_state_id", "job", ["state", "id"], unique=False)
    op.create_index(op.f("ix_job_created_at"), "job", ["created_at"], unique=False)
    _carry_over(job)
    op.drop_index(op.f("ix_queuedturn_conversation_id"), table_name="queuedturn")
    op.drop_table("queuedturn")
    op.drop_index(op.f("ix_commandjob_created_at"), table_name="commandjob")
    op.drop_table("commandjob")
    op.drop_table("lease")


def _carry_over(job: sa.Table) -> None:
    conn = op.get_bind()
    rows: list[dict[str, object]] = []
    turns = conn.execute(
        sa.text(
            "SELECT turn, attempts, stream_ts, created_at FROM queuedturn"
            " WHERE state IN ('pending', 'running')"
        )
    )
    for text, attempts, stream_ts, created_at in turns:
        turn = json.loads(text)
        team, channel, user = turn.get("team", ""), turn.get("channel", ""), turn.get("user", "")
        rows.append(
            {
                "kind": "turn",
                "key": f"turn:{team}:{channel}:{turn.get('ts', '')}",
                "queue": f"conversation:{team}:{channel}:{turn.get('thread_ts', '')}",
                "person": f"{team}:{user}",
                "payload": text,
                "attempts": attempts,
                "progress": json.dumps({"streams": [stream_ts]}) if stream_ts else None,
                "created_at": created_at,
            }
        )
    commands = conn.execute(
        sa.text(
            "SELECT trigger_id, body, attempts, created_at FROM commandjob"
            " WHERE state IN ('pending', 'running')"
        )
    )
    for trigger_id, body, attempts, created_at in commands:
        rows.append(
            {
                "kind": "command",
                "key": f"command:{trigger_id}",
                "queue": None,
                "person": None,
                "payload": body,
                "attempts": attempts,
                "progress": None,
                "created_at": created_at,
            }
        )
    if rows:
        op.bulk_insert(job, [{**r, "state": "pending", "owner": None, "lease_expires": 0.0} for r in rows])


def downgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "commandjob",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trigger_id"),
    )
    op.create_index(op.f("ix_commandjob_created_at"), "commandjob", ["created_at"], unique=False)
    op.create_table(
        "queuedturn",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("slack_ts", sa.String(length=32), nullable=False),
        sa.Column("turn", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stream_ts", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id", "slack_ts"),
    )
    op.create_index(op.f("ix_queuedturn_conversation_id"), "queuedturn", ["conversation_id"], unique=False)
    op.drop_index(op.f("ix_job_created_at"), table_name="job")
    op.drop_index("ix_job_state_id", table_name="job")
    op.drop_table("job")
