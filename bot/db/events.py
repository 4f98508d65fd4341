"""Slack deliveries already handled: the dedupe of retries and duplicate events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from bot.db.models import ProcessedEvent

if TYPE_CHECKING:
    from bot.db.engine import Database


class Events:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, *keys: str) -> bool:
        """Record deliveries as handled; False when any key was seen before (a replay)."""
        async with self.db.session() as s:
            for key in keys:
                s.add(ProcessedEvent(key=key))
            try:
                await s.commit()
            except IntegrityError:
                return False
        return True
