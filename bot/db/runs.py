"""Runs and their steps: what was asked, what ran, how it ended, what it cost.

Written with SQLAlchemy Core on one short transaction each: a run's trace is on the path of
every answer, and an ORM session per step (load, flush, commit, reset) cost more than the agent
loop itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlmodel import col
from sqlmodel import select as select_models

from bot import metrics
from bot.db.engine import fit_lengths
from bot.db.models import Run, Step, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database

RUNS = Run.__table__  # type: ignore[attr-defined]  # sqlmodel sets it on every table model
STEPS = Step.__table__  # type: ignore[attr-defined]


def step_rows(run_id: int, steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a Core insert: Core knows no pydantic default factories, so fill them here."""
    now = utcnow()
    for row in steps:
        metrics.step_recorded(row)
    return [fit_lengths(STEPS, {"run_id": run_id, "created_at": now, **row}) for row in steps]


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: set[int] = set()  # runs this process started (to interrupt at shutdown)

    async def start(self, trigger: str, **fields: Any) -> Run:
        run = Run(trigger=trigger, **fields)
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                insert(RUNS).values(fit_lengths(RUNS, run.model_dump(exclude={"id"}))).returning(RUNS.c.id)
            )
            run.id = result.scalar_one()
        self.started.add(run.id)
        return run

    async def finish(
        self,
        run_id: int,
        status: str,
        *,
        started_at: datetime | None = None,
        steps: Sequence[dict[str, Any]] = (),
        **fields: Any,
    ) -> None:
        """End the run (and write its last `steps`) in one transaction; `started_at` saves a read."""
        self.started.discard(run_id)
        finished_at = utcnow()
        async with self.db.engine.begin() as conn:
            if steps:
                await conn.execute(insert(STEPS), step_rows(run_id, steps))
            if started_at is None:
                started_at = (
                    await conn.execute(select(RUNS.c.started_at).where(RUNS.c.id == run_id))
                ).scalar()
                if started_at is None:
                    return
            if started_at.tzinfo is None:  # SQLite hands datetimes back without their zone
                started_at = started_at.replace(tzinfo=UTC)
            duration_ms = (finished_at - started_at).total_seconds() * 1000
            trigger = (
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.id == run_id)
                    .values(
                        status=status,
                        finished_at=finished_at,
                        duration_ms=duration_ms,
                        **fit_lengths(RUNS, fields),
                    )
                    .returning(RUNS.c.trigger)
                )
            ).scalar()
        if trigger is not None:
            metrics.run_finished(trigger, status)

    async def interrupt_running(self, error: str = "interrupted by shutdown") -> int:
        """Mark this process's runs still in flight as interrupted (other processes share the db)."""
        if not self.started:
            return 0
        async with self.db.session() as s:
            result = await s.exec(
                update(Run)
                .where(col(Run.status) == "running", col(Run.id).in_(self.started))
                .values(status="interrupted", error=error, finished_at=utcnow())
            )
            await s.commit()
            return result.rowcount or 0

    async def add_steps(self, run_id: int, steps: Sequence[dict[str, Any]]) -> None:
        """Several steps of one run in one insert (the trace batches what arrives while it writes)."""
        if steps:
            async with self.db.engine.begin() as conn:
                await conn.execute(insert(STEPS), step_rows(run_id, steps))

    async def add_step(self, run_id: int, **fields: Any) -> None:
        await self.add_steps(run_id, [fields])

    async def recent(self, user_id: str, limit: int = 5) -> list[Run]:
        """A user's newest runs, newest first (the Home tab lists them)."""
        async with self.db.session() as s:
            q = (
                select_models(Run)
                .where(col(Run.user_id) == user_id)
                .order_by(col(Run.id).desc())
                .limit(limit)
            )
            return list((await s.exec(q)).all())

    # --- reading, for operators (`switchboard runs`) -------------------------------------------
    async def get(self, run_id: int) -> Run | None:
        async with self.db.session() as s:
            return await s.get(Run, run_id)

    async def steps(self, run_id: int) -> list[Step]:
        async with self.db.session() as s:
            q = select_models(Step).where(Step.run_id == run_id).order_by(col(Step.id))
            return list((await s.exec(q)).all())

    async def latest(self, limit: int = 20) -> list[Run]:
        async with self.db.session() as s:
            q = select_models(Run).order_by(col(Run.id).desc()).limit(limit)
            return list((await s.exec(q)).all())
