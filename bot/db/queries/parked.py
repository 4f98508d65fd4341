"""Parked write calls: approvals of kind "write" and whether their outcome has been acted on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlmodel import col, or_, select

from bot.db.models import Approval, ParkedSettlement

if TYPE_CHECKING:
    from bot.db.database import Database

WRITE_KIND = "write"


class ParkedCalls:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, approval_id: int, outcome: str) -> bool:
        """True for the one caller that may act on this outcome; False if it was acted on already."""
        return await self.db.insert_new([ParkedSettlement(approval_id=approval_id, outcome=outcome)])

    async def unsettled(self, limit: int = 50) -> list[Approval]:
        """Write approvals decided or past their time whose outcome nobody has acted on yet."""
        settled = select(ParkedSettlement.approval_id)
        q = (
            select(Approval)
            .where(
                Approval.kind == WRITE_KIND,
                or_(col(Approval.state) != "pending", col(Approval.expires_at) <= time.time()),
                col(Approval.id).not_in(settled),
            )
            .order_by(col(Approval.id))
            .limit(limit)
        )
        async with self.db.reading() as conn:  # every few seconds, usually finding nothing: no transaction
            rows = (await conn.execute(q)).mappings().all()
        return [Approval.model_validate(dict(row)) for row in rows]
