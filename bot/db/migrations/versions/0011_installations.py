"""Installations of the app through Slack's OAuth flow (tokens encrypted) and OAuth states.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slackinstallation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("is_enterprise_install", sa.Boolean(), nullable=False),
        sa.Column("app_id", sa.String(length=32), nullable=True),
        sa.Column("bot_id", sa.String(length=32), nullable=True),
        sa.Column("bot_user_id", sa.String(length=32), nullable=True),
        sa.Column("bot_scopes", sa.String(), nullable=False),
        sa.Column("bot_token", sa.String(), nullable=False),
        sa.Column("installer_user_id", sa.String(length=32), nullable=True),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enterprise_id", "team_id"),
    )
    op.create_index(op.f("ix_slackinstallation_team_id"), "slackinstallation", ["team_id"], unique=False)
    op.create_table(
        "oauthstate",
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("state"),
    )
    op.create_index(op.f("ix_oauthstate_expires_at"), "oauthstate", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_oauthstate_expires_at"), table_name="oauthstate")
    op.drop_table("oauthstate")
    op.drop_index(op.f("ix_slackinstallation_team_id"), table_name="slackinstallation")
    op.drop_table("slackinstallation")
