"""Which channel the user is viewing beside each assistant thread (Slack tells us on change).

Rows are keyed by workspace: in OAuth mode two workspaces can hold the same DM id and thread ts,
and one must never read or overwrite the other's context (issue 24).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from bot.db.models import AssistantContext, utcnow

if TYPE_CHECKING:
    from bot.db.database import Database


class AssistantContexts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, channel_id: str, thread_ts: str, viewed: str, team_id: str | None = None) -> None:
        team = team_id or ""
        for _ in range(2):  # a concurrent first save wins the insert; the second pass updates it
            async with self.db.session() as s:
                q = select(AssistantContext).where(
                    AssistantContext.team_id == team,
                    AssistantContext.channel_id == channel_id,
                    AssistantContext.thread_ts == thread_ts,
                )
                row = (await s.exec(q)).first()
                if row is not None:
                    row.viewed_channel_id, row.updated_at = viewed, utcnow()
                    await s.commit()
                    return
            new = AssistantContext(
                team_id=team, channel_id=channel_id, thread_ts=thread_ts, viewed_channel_id=viewed
            )
            if await self.db.insert_new([new]):  # ON CONFLICT DO NOTHING: a lost race is no ERROR
                return

    async def viewed(self, channel_id: str, thread_ts: str, team_id: str) -> str | None:
        """The channel last seen beside this thread in workspace `team_id`, or None if Slack never
        said (a row saved without a workspace, before they were recorded, still counts)."""
        async with self.db.session() as s:
            q = (
                select(AssistantContext.viewed_channel_id)
                .where(
                    AssistantContext.channel_id == channel_id,
                    AssistantContext.thread_ts == thread_ts,
                    col(AssistantContext.team_id).in_((team_id, "")),
                )
                .order_by(col(AssistantContext.team_id).desc())  # this workspace's row first
            )
            return (await s.exec(q)).first()
