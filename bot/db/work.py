"""What queued turns and command jobs share: a row worked under a lease, attempt by attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import col, update

from bot.db.models import CommandJob, QueuedTurn, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database

FINISHED = ("done", "failed", "interrupted")
# Starts of one turn or command before it is given up with an apology: enough to ride out a run
# of crashes (bench/crash_recovery.py kills a process every few seconds; at 3, 7 of 40 turns
# were given up), few enough that a message that itself kills the process stops.
MAX_ATTEMPTS = 5
WorkRow = type[QueuedTurn] | type[CommandJob]


async def start_attempt(db: Database, model: WorkRow, row_id: int) -> int:
    """Mark the row running under the caller's lease; returns its attempt number (1 = first)."""
    async with db.session() as s:
        await s.exec(
            update(model)
            .where(col(model.id) == row_id)
            .values(state="running", attempts=col(model.attempts) + 1)
        )
        await s.commit()
        row = await s.get(model, row_id)
        assert row is not None
        await s.refresh(row)
        started: int = row.attempts  # type: ignore[attr-defined]  # both models have it
        return started


async def set_state(db: Database, model: WorkRow, row_id: int, state: str) -> None:
    values: dict[str, Any] = {"state": state}
    if state in FINISHED:
        values["finished_at"] = utcnow()
    async with db.session() as s:
        await s.exec(update(model).where(col(model.id) == row_id).values(**values))
        await s.commit()
