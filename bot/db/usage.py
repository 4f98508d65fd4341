"""Token, cost and run totals over a period: for daily caps and `/switchboard usage`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import col, select

from bot.db.models import Run

if TYPE_CHECKING:
    from bot.db.engine import Database


@dataclass(frozen=True)
class Totals:
    runs: int = 0  # refused runs (a cap was used up) are not counted: they did nothing
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_runs: int = 0  # runs with tokens but no price for their model


class UsageQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def totals(
        self, team: str, since: datetime, *, user: str | None = None, channel: str | None = None
    ) -> Totals:
        """Runs started since `since` in `team`, optionally one person's or one channel's."""
        tokens = col(Run.prompt_tokens) + col(Run.completion_tokens)
        q = select(
            func.count(col(Run.id)).filter(col(Run.status) != "refused"),
            func.coalesce(func.sum(tokens), 0),
            func.coalesce(func.sum(col(Run.cost_usd)), 0.0),
            func.count(col(Run.id)).filter(col(Run.cost_usd).is_(None), tokens > 0),
        ).where(Run.team_id == team, col(Run.started_at) >= since)
        if user is not None:
            q = q.where(Run.user_id == user)
        if channel is not None:
            q = q.where(Run.channel_id == channel)
        async with self.db.session() as s:
            runs, used, cost, unpriced = (await s.exec(q)).one()
        return Totals(int(runs or 0), int(used or 0), float(cost or 0.0), int(unpriced or 0))
