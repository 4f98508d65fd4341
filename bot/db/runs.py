"""Runs and their steps: what was asked, what ran, how it ended, what it cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import col, select, update

from bot import metrics
from bot.db.models import Run, Step, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: set[int] = set()  # runs this process started (to interrupt at shutdown)

    async def start(self, trigger: str, **fields: Any) -> Run:
        async with self.db.session() as s:
            run = Run(trigger=trigger, **fields)
            s.add(run)
            await s.commit()
        assert run.id is not None
        self.started.add(run.id)
        return run

    async def finish(self, run_id: int, status: str, **fields: Any) -> None:
        self.started.discard(run_id)
        async with self.db.session() as s:
            run = await s.get(Run, run_id)
            if run is None:
                return
            run.status = status
            run.finished_at = utcnow()
            run.duration_ms = (run.finished_at - run.started_at).total_seconds() * 1000
            for k, v in fields.items():
                setattr(run, k, v)
            s.add(run)
            await s.commit()
        metrics.run_finished(run.trigger, status)

    async def get(self, run_id: int) -> Run | None:
        async with self.db.session() as s:
            return await s.get(Run, run_id)

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

    async def add_step(self, run_id: int, **fields: Any) -> None:
        step = Step(run_id=run_id, **fields)
        async with self.db.session() as s:
            s.add(step)
            await s.commit()
        metrics.step_recorded(step)

    async def steps(self, run_id: int) -> list[Step]:
        async with self.db.session() as s:
            q = select(Step).where(Step.run_id == run_id).order_by(col(Step.id))
            return list((await s.exec(q)).all())

    async def find(self, **where: Any) -> list[Run]:
        async with self.db.session() as s:
            q = select(Run).order_by(col(Run.id))
            for k, v in where.items():
                q = q.where(getattr(Run, k) == v)
            return list((await s.exec(q)).all())

    async def recent(self, limit: int = 20) -> list[Run]:
        async with self.db.session() as s:
            q = select(Run).order_by(col(Run.id).desc()).limit(limit)
            return list((await s.exec(q)).all())
