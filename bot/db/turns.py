"""The per-conversation queue of messages waiting to be answered, oldest first."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from bot.db.models import QueuedTurn, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database

FINISHED = ("done", "failed", "interrupted")


class Turns:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, conversation_id: int, slack_ts: str, turn: dict[str, Any]) -> int:
        """Queue a message; the same Slack message queued twice keeps its first place."""
        async with self.db.session() as s:
            row = QueuedTurn(conversation_id=conversation_id, slack_ts=slack_ts, turn=json.dumps(turn))
            s.add(row)
            try:
                await s.commit()
                assert row.id is not None
                return row.id
            except IntegrityError:
                await s.rollback()
            q = select(QueuedTurn).where(
                QueuedTurn.conversation_id == conversation_id, QueuedTurn.slack_ts == slack_ts
            )
            found = (await s.exec(q)).one()
            assert found.id is not None
            return found.id

    async def next_pending(self, conversation_id: int) -> QueuedTurn | None:
        async with self.db.session() as s:
            q = (
                select(QueuedTurn)
                .where(QueuedTurn.conversation_id == conversation_id, QueuedTurn.state == "pending")
                .order_by(col(QueuedTurn.id))
                .limit(1)
            )
            return (await s.exec(q)).first()

    async def set_state(self, turn_id: int, state: str) -> None:
        values: dict[str, Any] = {"state": state}
        if state in FINISHED:
            values["finished_at"] = utcnow()
        async with self.db.session() as s:
            await s.exec(update(QueuedTurn).where(col(QueuedTurn.id) == turn_id).values(**values))
            await s.commit()

    async def state(self, turn_id: int) -> str | None:
        async with self.db.session() as s:
            row = await s.get(QueuedTurn, turn_id)
            return row.state if row else None

    async def abandon_running(self, conversation_id: int) -> int:
        """Turns left `running` by an owner whose lease lapsed (it crashed): never run them twice."""
        async with self.db.session() as s:
            result = await s.exec(
                update(QueuedTurn)
                .where(col(QueuedTurn.conversation_id) == conversation_id, col(QueuedTurn.state) == "running")
                .values(state="interrupted", finished_at=utcnow())
            )
            await s.commit()
            return result.rowcount or 0

    async def waiting_conversations(self, max_age: timedelta) -> list[int]:
        """Conversations with queued messages nobody has started on; older ones are given up."""
        async with self.db.session() as s:
            await s.exec(
                update(QueuedTurn)
                .where(col(QueuedTurn.state) == "pending", col(QueuedTurn.created_at) < utcnow() - max_age)
                .values(state="interrupted", finished_at=utcnow())
            )
            await s.commit()
            q = select(QueuedTurn.conversation_id).where(QueuedTurn.state == "pending").distinct()
            return list((await s.exec(q)).all())
