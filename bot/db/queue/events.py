"""Slack deliveries already handled: the dedupe of retries and duplicate events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.db.models import ProcessedEvent
from bot.ops import metrics

if TYPE_CHECKING:
    from bot.db.database import Database


class Events:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, *keys: str) -> bool:
        """Record deliveries as handled; False when any key was seen before (a replay)."""
        new = await self.db.insert_new([ProcessedEvent(key=key) for key in keys])
        if not new:
            metrics.EVENTS_DEDUPLICATED.inc()
        return new
