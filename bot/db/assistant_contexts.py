"""Which channel the user is viewing beside each assistant thread (Slack tells us on change)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, or_, select

from bot.db.models import AssistantContext, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database


class AssistantContexts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, channel_id: str, thread_ts: str, viewed: str, team_id: str | None = None) -> None:
        for _ in range(2):  # a concurrent first save wins the insert; the second pass updates it
            async with self.db.session() as s:
                q = select(AssistantContext).where(
                    AssistantContext.channel_id == channel_id, AssistantContext.thread_ts == thread_ts
                )
                row = (await s.exec(q)).first()
                if row is not None:
                    row.viewed_channel_id, row.team_id, row.updated_at = viewed, team_id, utcnow()
                    s.add(row)
                    await s.commit()
                    return
            new = AssistantContext(
                channel_id=channel_id, thread_ts=thread_ts, viewed_channel_id=viewed, team_id=team_id
            )
            if await self.db.insert_new([new]):  # ON CONFLICT DO NOTHING: a lost race is no ERROR
                return

    async def viewed(self, channel_id: str, thread_ts: str, team_id: str) -> str | None:
        """The channel last seen beside this thread in workspace `team_id`, or None if Slack never
        said (a row saved without a workspace, before they were recorded, still counts)."""
        async with self.db.session() as s:
            q = select(AssistantContext.viewed_channel_id).where(
                AssistantContext.channel_id == channel_id,
                AssistantContext.thread_ts == thread_ts,
                or_(col(AssistantContext.team_id) == team_id, col(AssistantContext.team_id).is_(None)),
            )
            return (await s.exec(q)).first()
