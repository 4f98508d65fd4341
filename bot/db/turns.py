"""The per-conversation queue of messages waiting to be answered, oldest first."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from bot.db.models import QueuedTurn, utcnow
from bot.db.work import set_state, start_attempt

if TYPE_CHECKING:
    from bot.db.engine import Database


class Turns:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, conversation_id: int, slack_ts: str, turn: dict[str, Any]) -> tuple[int, bool]:
        """Queue a message: (its id, True); the same Slack message again keeps its first place
        and answers (its id, False), which is how a retried delivery is recognised.
        """
        row = QueuedTurn(conversation_id=conversation_id, slack_ts=slack_ts, turn=json.dumps(turn))
        async with self.db.session() as s:
            s.add(row)
            try:
                await s.commit()
                assert row.id is not None
                return row.id, True
            except IntegrityError:
                await s.rollback()
            q = select(QueuedTurn.id).where(
                QueuedTurn.conversation_id == conversation_id, QueuedTurn.slack_ts == slack_ts
            )
            found = (await s.exec(q)).one()
            assert found is not None
            return found, False

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
        await set_state(self.db, QueuedTurn, turn_id, state)

    async def set_stream(self, turn_id: int, ts: str) -> None:
        async with self.db.session() as s:
            await s.exec(update(QueuedTurn).where(col(QueuedTurn.id) == turn_id).values(stream_ts=ts))
            await s.commit()

    async def state(self, turn_id: int) -> str | None:
        async with self.db.session() as s:
            row = await s.get(QueuedTurn, turn_id)
            return row.state if row else None

    async def start(self, turn_id: int) -> int:
        """Mark it running under the caller's lease; returns its attempt number (1 = first)."""
        return await start_attempt(self.db, QueuedTurn, turn_id)

    async def requeue_running(self, conversation_id: int, max_attempts: int) -> list[QueuedTurn]:
        """Turns a crashed owner left `running` go back in line to be redone (the new holder
        replaces whatever the dead attempt showed); out of attempts, they are given up
        (`interrupted`). Returns every turn that was left running, in its new state.
        """
        async with self.db.session() as s:
            q = select(QueuedTurn).where(
                QueuedTurn.conversation_id == conversation_id, QueuedTurn.state == "running"
            )
            left = list((await s.exec(q)).all())
            for turn in left:
                out_of_attempts = turn.attempts >= max_attempts
                turn.state = "interrupted" if out_of_attempts else "pending"
                turn.finished_at = utcnow() if out_of_attempts else None
                s.add(turn)
            await s.commit()
            for turn in left:
                await s.refresh(turn)
            return left

    async def unserved_conversations(self, max_age: timedelta) -> list[int]:
        """Conversations with turns waiting or left running; turns older than `max_age` are
        given up (by the time we are back, the question is stale).
        """
        async with self.db.session() as s:
            await s.exec(
                update(QueuedTurn)
                .where(
                    col(QueuedTurn.state).in_(("pending", "running")),
                    col(QueuedTurn.created_at) < utcnow() - max_age,
                )
                .values(state="interrupted", finished_at=utcnow())
            )
            await s.commit()
            q = (
                select(QueuedTurn.conversation_id)
                .where(col(QueuedTurn.state).in_(("pending", "running")))
                .distinct()
            )
            return list((await s.exec(q)).all())
