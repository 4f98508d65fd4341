"""Slash commands accepted before their ack, until one process has finished each once."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select, update

from bot.db.models import CommandJob, utcnow
from bot.db.work import set_state, start_attempt

if TYPE_CHECKING:
    from bot.db.engine import Database


class CommandJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, trigger_id: str, body: dict[str, Any]) -> int | None:
        """Record a command; None when this invocation (its trigger_id) was recorded before."""
        row = CommandJob(trigger_id=trigger_id, body=json.dumps(body))
        if not await self.db.insert_new([row]):
            return None
        async with self.db.session() as s:
            found = (await s.exec(select(CommandJob.id).where(CommandJob.trigger_id == trigger_id))).one()
            assert found is not None
            return found

    async def get(self, job_id: int) -> CommandJob | None:
        async with self.db.session() as s:
            return await s.get(CommandJob, job_id)

    async def start(self, job_id: int) -> int:
        """Mark it running under the caller's lease; returns its attempt number (1 = first)."""
        return await start_attempt(self.db, CommandJob, job_id)

    async def set_state(self, job_id: int, state: str) -> None:
        await set_state(self.db, CommandJob, job_id, state)

    async def unfinished(self, max_age: timedelta) -> list[int]:
        """Jobs not finished; older ones are given up (a response_url lives 30 minutes)."""
        async with self.db.session() as s:
            await s.exec(
                update(CommandJob)
                .where(
                    col(CommandJob.state).in_(("pending", "running")),
                    col(CommandJob.created_at) < utcnow() - max_age,
                )
                .values(state="interrupted", finished_at=utcnow())
            )
            await s.commit()
            q = select(CommandJob.id).where(col(CommandJob.state).in_(("pending", "running")))
            return [i for i in (await s.exec(q.order_by(col(CommandJob.id)))).all() if i is not None]
