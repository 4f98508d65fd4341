"""Thumbs up/down on answers: one rating per (run, user)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import select

from bot.db.models import Feedback, Run, utcnow

if TYPE_CHECKING:
    from bot.db.database import Database


class Feedbacks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, run_id: int, user_id: str, value: str) -> bool:
        """One rating per (run, user): a second click changes it. False when the run is unknown."""
        async with self.db.session() as s:
            if await s.get(Run, run_id) is None:
                return False
            found = (
                await s.exec(select(Feedback).where(Feedback.run_id == run_id, Feedback.user_id == user_id))
            ).first()
            if found is None:
                s.add(Feedback(run_id=run_id, user_id=user_id, value=value))
            else:
                found.value, found.created_at = value, utcnow()
                s.add(found)
            await s.commit()
            return True
