"""Queries only tests ask (what a run recorded, which claims exist); the bot itself never needs them.

Written like the bot's own query modules (a session from `db.session()`, sqlmodel `select`), but
kept here so `bot/db/` holds only what the running bot uses.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from bot.db import Database
from bot.db.models import DigestClaim, Feedback, Run, Step


async def runs(db: Database, **where: Any) -> list[Run]:
    """Every run, oldest first, optionally filtered on columns (`trigger="digest"`)."""
    async with db.session() as s:
        q = select(Run).order_by(col(Run.id))
        for name, value in where.items():
            q = q.where(getattr(Run, name) == value)
        return list((await s.exec(q)).all())


async def last_run(db: Database) -> Run:
    found = await runs(db)
    assert found, "no run was recorded"
    return found[-1]


async def run(db: Database, run_id: int) -> Run | None:
    async with db.session() as s:
        return await s.get(Run, run_id)


async def steps(db: Database, run_id: int) -> list[Step]:
    async with db.session() as s:
        q = select(Step).where(Step.run_id == run_id).order_by(col(Step.id))
        return list((await s.exec(q)).all())


async def feedback(db: Database, run_id: int) -> list[Feedback]:
    async with db.session() as s:
        return list((await s.exec(select(Feedback).where(Feedback.run_id == run_id))).all())


async def claims(db: Database, schedule_id: int) -> list[DigestClaim]:
    async with db.session() as s:
        q = (
            select(DigestClaim)
            .where(DigestClaim.schedule_id == schedule_id)
            .order_by(col(DigestClaim.fire_time))
        )
        return list((await s.exec(q)).all())
