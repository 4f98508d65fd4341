"""Digest schedules and their claims: the scheduler's source of truth.

A claim row records the outcome of one (schedule, fire time): claimed, posted or failed. Who is
working on a claimed one is a lease (bot/db/leases.py, key bot.digests.delivery.lease_key), so a
claim whose lease lapsed belongs to a process that died and is taken over.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert
from sqlmodel import col, select, update

from bot.db.locks import serialized
from bot.db.models import DigestClaim, DigestSchedule, fit_lengths, utcnow
from bot.ops import metrics
from tools.toolkit.errors import InvariantError, SwitchboardError

if TYPE_CHECKING:
    from bot.db.database import Database


PAUSED = "paused"  # a schedule whose creator or audience rule no longer allows it to post
SCHEDULES = DigestSchedule.__table__  # type: ignore[attr-defined]


class ChannelFull(SwitchboardError):
    """A channel already has as many schedules as the adder may set up (the listener words it,
    with the channel)."""

    def __init__(self, existing: int) -> None:
        super().__init__(f"{existing} schedules")
        self.existing = existing


class Digests:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, *, cap: int | None = None, **fields: Any) -> DigestSchedule:
        """Store a schedule; with `cap`, only while fewer than `cap` post in its channel (else
        ChannelFull). The count and the insert run under one lock (bot/db/locks.py), so
        concurrent adds, on any process, cannot all pass the same count."""
        schedule = DigestSchedule(**fields)
        if cap is None:
            async with self.db.session() as s:
                s.add(schedule)
                await s.commit()
                return schedule
        team, channel = schedule.team_id, schedule.channel_id
        async with serialized(self.db, f"digests:{team}:{channel}") as conn:
            count = select(func.count()).where(SCHEDULES.c.team_id == team, SCHEDULES.c.channel_id == channel)
            existing = int((await conn.execute(count)).scalar_one())
            if existing >= cap:
                raise ChannelFull(existing)
            values = fit_lengths(SCHEDULES, schedule.model_dump(exclude={"id"}))
            key = (await conn.execute(insert(SCHEDULES).values(values))).inserted_primary_key
            if key is None:
                raise InvariantError("the insert returned no primary key")
            schedule.id = int(key[0])
            return schedule

    async def get(self, schedule_id: int) -> DigestSchedule | None:
        async with self.db.session() as s:
            return await s.get(DigestSchedule, schedule_id)

    async def all(self, team: str | None = None, channel: str | None = None) -> list[DigestSchedule]:
        async with self.db.session() as s:
            q = select(DigestSchedule).order_by(col(DigestSchedule.id))
            if team is not None:
                q = q.where(DigestSchedule.team_id == team)
            if channel is not None:
                q = q.where(
                    (col(DigestSchedule.channel_id) == channel)
                    | (col(DigestSchedule.source_channel_id) == channel)
                )
            return list((await s.exec(q)).all())

    async def remove(self, schedule_id: int) -> bool:
        async with self.db.session() as s:
            found = await s.get(DigestSchedule, schedule_id)
            if found is None:
                return False
            await s.delete(found)
            await s.commit()
            return True

    async def claim(self, schedule_id: int, fire_time: datetime) -> bool:
        """True for exactly one caller per (schedule, fire time), whatever the process."""
        return await self.db.insert_new([DigestClaim(schedule_id=schedule_id, fire_time=fire_time)])

    async def claim_status(self, schedule_id: int, fire_time: datetime) -> str | None:
        """claimed (someone is posting it, or died doing so), posted, failed; None: never claimed."""
        async with self.db.session() as s:
            q = select(DigestClaim.status).where(
                col(DigestClaim.schedule_id) == schedule_id, col(DigestClaim.fire_time) == fire_time
            )
            return (await s.exec(q)).first()

    async def unfinished(self, since: datetime) -> list[DigestClaim]:
        """Claims still `claimed` for fire times since `since`: in progress, or their owner died."""
        async with self.db.session() as s:
            q = (
                select(DigestClaim)
                .where(col(DigestClaim.status) == "claimed", col(DigestClaim.fire_time) >= since)
                .order_by(col(DigestClaim.fire_time))
            )
            return list((await s.exec(q)).all())

    async def set_claim_status(self, schedule_id: int, fire_time: datetime, status: str) -> None:
        async with self.db.session() as s:
            await s.exec(
                update(DigestClaim)
                .where(col(DigestClaim.schedule_id) == schedule_id, col(DigestClaim.fire_time) == fire_time)
                .values(status=status)
            )
            await s.commit()
        if status == "posted":
            metrics.DIGESTS_POSTED.inc()

    async def previous_posted(self, schedule_id: int, before: datetime) -> datetime | None:
        """The fire time of the last digest posted before this one: where the next one starts."""
        async with self.db.session() as s:
            q = (
                select(DigestClaim.fire_time)
                .where(
                    DigestClaim.schedule_id == schedule_id,
                    col(DigestClaim.fire_time) < before,
                    col(DigestClaim.status) == "posted",
                )
                .order_by(col(DigestClaim.fire_time).desc())
                .limit(1)
            )
            return (await s.exec(q)).first()

    async def record(self, schedule_id: int, status: str, error: str | None = None) -> DigestSchedule | None:
        """Note a run's outcome; consecutive failures are counted so the creator can be told."""
        async with self.db.session() as s:
            schedule = await s.get(DigestSchedule, schedule_id)
            if schedule is None:
                return None
            schedule.last_run_at = utcnow()
            schedule.last_status = status
            schedule.last_error = error
            schedule.failures = schedule.failures + 1 if status == "failed" else 0
            s.add(schedule)
            await s.commit()
            return schedule

    async def pause(self, schedule_id: int, reason: str) -> DigestSchedule | None:
        """Stop a schedule that may no longer post (status "paused"; the reason kept as its error)."""
        async with self.db.session() as s:
            schedule = await s.get(DigestSchedule, schedule_id)
            if schedule is None:
                return None
            schedule.last_status, schedule.last_error = PAUSED, reason
            s.add(schedule)
            await s.commit()
            return schedule
