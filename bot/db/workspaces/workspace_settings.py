"""Workspace and channel settings, and the record of every change to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from bot.controls.channel_config import WORKSPACE, Effective, combine
from bot.db.models import ChannelSetting, SettingChange, insert_ignoring, utcnow

if TYPE_CHECKING:
    from bot.db.database import Database


SETTINGS = ChannelSetting.__table__  # type: ignore[attr-defined]


class ChannelSettings:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def rows(self, team: str, channel: str) -> dict[str, str]:
        """The values set on exactly this scope (a channel id or WORKSPACE)."""
        async with self.db.session() as s:
            q = select(ChannelSetting).where(
                ChannelSetting.team_id == team, ChannelSetting.channel_id == channel
            )
            return {r.key: r.value for r in (await s.exec(q)).all()}

    async def effective(self, team: str, channel: str, conn: AsyncConnection | None = None) -> Effective:
        """What a run in `channel` uses: the workspace's values overlaid by the channel's (read on
        `conn`, a read unit, when given)."""
        scopes = [WORKSPACE] if channel == WORKSPACE else [WORKSPACE, channel]
        t = SETTINGS
        q = sa_select(t.c.channel_id, t.c.key, t.c.value).where(
            t.c.team_id == team, t.c.channel_id.in_(scopes)
        )
        if conn is None:
            async with self.db.reading() as own:
                found = (await own.execute(q)).all()
        else:
            found = (await conn.execute(q)).all()
        rows: list[dict[str, str | None]] = [
            {r.key: r.value for r in found if r.channel_id == scope} for scope in scopes
        ]
        return combine(rows)

    async def write(self, team: str, channel: str, key: str, value: str | None, user: str) -> str | None:
        """Set (or, with None, unset) one value and record the change; returns the old value.

        Two saves at once (a double-clicked Save) may both find no row and both insert it: the
        one that loses the race is written again, over the winner's row.
        """
        for _ in range(2):
            written, old = await self._write(team, channel, key, value, user)
            if written:
                break
        return old

    async def _write(
        self, team: str, channel: str, key: str, value: str | None, user: str
    ) -> tuple[bool, str | None]:
        """(False, _) when a concurrent save inserted the row first (nothing written then)."""
        async with self.db.session() as s:
            q = select(ChannelSetting).where(
                ChannelSetting.team_id == team,
                ChannelSetting.channel_id == channel,
                ChannelSetting.key == key,
            )
            row = (await s.exec(q)).first()
            old = row.value if row else None
            if value is None and row is not None:  # by statement: a concurrent unset may have won
                await s.exec(delete(ChannelSetting).where(col(ChannelSetting.id) == row.id))
            elif value is not None and row is None:
                # ON CONFLICT DO NOTHING: losing the race is normal, and Postgres would log an ERROR.
                new = ChannelSetting(team_id=team, channel_id=channel, key=key, value=value, updated_by=user)
                if (await s.exec(insert_ignoring(self.db.dialect, [new]))).rowcount != 1:
                    return False, old
            elif value is not None and row is not None:
                row.value, row.updated_by, row.updated_at = value, user, utcnow()
                s.add(row)
            s.add(
                SettingChange(
                    team_id=team, channel_id=channel, key=key, old_value=old, new_value=value, user_id=user
                )
            )
            await s.commit()
            return True, old

    async def changes(self, team: str, limit: int = 20) -> list[SettingChange]:
        async with self.db.session() as s:
            q = (
                select(SettingChange)
                .where(SettingChange.team_id == team)
                .order_by(col(SettingChange.id).desc())
                .limit(limit)
            )
            return list((await s.exec(q)).all())
