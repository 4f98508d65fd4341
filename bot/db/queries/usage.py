"""Token, cost and run totals over a period: for daily caps and `/switchboard usage`; the
reservations runs in flight hold against those caps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from bot.db.locks import serialized
from bot.db.models import BudgetReservation, Run, utcnow
from tools.toolkit.errors import InvariantError

if TYPE_CHECKING:
    from bot.db.database import Database


@dataclass(frozen=True)
class Totals:
    runs: int = 0  # refused runs (a cap was used up) are not counted: they did nothing
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_runs: int = 0  # runs with tokens but no price for their model


@dataclass(frozen=True)
class Spent:
    """One scope's day so far (a person's or a channel's): what finished runs recorded, and what
    runs in flight hold. A run's row carries its tokens once it ends, when its hold is deleted."""

    used: int = 0
    held: int = 0


@dataclass(frozen=True)
class Reserved:
    person: Spent
    channel: Spent
    id: int | None  # the reservation to settle; None when nothing was reserved
    tokens: int = 0


RESERVATIONS = BudgetReservation.__table__  # type: ignore[attr-defined]
RUNS = Run.__table__  # type: ignore[attr-defined]


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

    async def reserve(
        self,
        team: str,
        user: str,
        channel: str,
        *,
        since: datetime,
        live_since: datetime,
        tokens: Callable[[Spent, Spent], int],
    ) -> Reserved:
        """Hold `tokens(person, channel)` tokens for a run, deciding and inserting under one lock
        (bot/db/locks.py), so concurrent runs see each other's holds. Holds older than
        `live_since` belong to dead processes: not counted, and deleted here."""
        keys = (f"budget:{team}:user:{user}", f"budget:{team}:channel:{channel}")
        async with serialized(self.db, *keys) as conn:
            await conn.execute(
                delete(RESERVATIONS).where(
                    RESERVATIONS.c.team_id == team, RESERVATIONS.c.created_at < live_since
                )
            )
            held_since = max(since, live_since)
            person, place = await _spent(conn, team, user, channel, since, held_since)
            wanted = tokens(person, place)
            if wanted <= 0:
                return Reserved(person, place, None)
            row = {
                "team_id": team,
                "user_id": user,
                "channel_id": channel,
                "tokens": wanted,
                "created_at": utcnow(),
            }
            key = (await conn.execute(insert(RESERVATIONS).values(row))).inserted_primary_key
            if key is None:
                raise InvariantError("the insert returned no primary key")
            return Reserved(person, place, int(key[0]), wanted)

    async def settle(self, reservation: int) -> None:
        """The run ended and its row carries what it spent: its hold no longer counts."""
        async with self.db.engine.begin() as conn:
            await self.release(conn, reservation)

    async def release(self, conn: AsyncConnection, reservation: int) -> None:
        """`settle` inside the caller's transaction (the one writing the run's end)."""
        await conn.execute(delete(RESERVATIONS).where(RESERVATIONS.c.id == reservation))


async def _spent(
    conn: AsyncConnection, team: str, user: str, channel: str, since: datetime, held_since: datetime
) -> tuple[Spent, Spent]:
    """The person's and the channel's day: tokens of the runs started since `since`, and held
    since `held_since`. One statement, so one snapshot: on Postgres (READ COMMITTED) each
    statement sees the commits made before it, so reading the runs and the holds apart could
    miss a run that ended in between twice (its tokens not yet in its row, its hold already
    released) and let a run reserve what is spent."""

    def used(column: str, value: str) -> Any:
        tokens = func.coalesce(func.sum(RUNS.c.prompt_tokens + RUNS.c.completion_tokens), 0)
        return (
            select(tokens)
            .where(RUNS.c.team_id == team, RUNS.c.started_at >= since, RUNS.c[column] == value)
            .scalar_subquery()
        )

    def held(column: str, value: str) -> Any:
        return (
            select(func.coalesce(func.sum(RESERVATIONS.c.tokens), 0))
            .where(
                RESERVATIONS.c.team_id == team,
                RESERVATIONS.c.created_at >= held_since,
                RESERVATIONS.c[column] == value,
            )
            .scalar_subquery()
        )

    q = select(
        used("user_id", user), held("user_id", user), used("channel_id", channel), held("channel_id", channel)
    )
    person_used, person_held, place_used, place_held = (await conn.execute(q)).one()
    return Spent(int(person_used or 0), int(person_held or 0)), Spent(
        int(place_used or 0), int(place_held or 0)
    )
