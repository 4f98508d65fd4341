"""Thumbs up/down on answers: one rating per (run, user)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.db.models import Feedback, Run, utcnow

if TYPE_CHECKING:
    from bot.db.database import Database

FEEDBACK = Feedback.__table__  # type: ignore[attr-defined]
RUNS = Run.__table__  # type: ignore[attr-defined]


class Feedbacks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, run_id: int, user_id: str, value: str) -> bool:
        """One rating per (run, user): a second click changes it. False when the run is unknown.
        One upsert: a read finding no rating does not stop a click made at the same moment from
        inserting it first (the second insert broke the key, and its click was lost)."""
        now = utcnow()
        upsert = (
            self.db.insert_statement(FEEDBACK)
            .values(run_id=run_id, user_id=user_id, value=value, created_at=now)
            .on_conflict_do_update(
                index_elements=["run_id", "user_id"], set_={"value": value, "created_at": now}
            )
        )
        async with self.db.engine.begin() as conn:
            if (await conn.execute(select(RUNS.c.id).where(RUNS.c.id == run_id))).first() is None:
                return False
            await conn.execute(upsert)
            return True
