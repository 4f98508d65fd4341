"""Approvals: a question to one person, decided once (by that person, before it expires)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlmodel import col, update

from bot.db.models import Approval

if TYPE_CHECKING:
    from bot.db.database import Database

DECIDED = ("approved", "denied", "expired")


class Approvals:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, *, requester_id: str, kind: str, summary: str, ttl: float, **fields: Any
    ) -> Approval:
        now = time.time()
        async with self.db.session() as s:
            row = Approval(
                requester_id=requester_id,
                kind=kind,
                summary=summary,
                expires_at=now + ttl,
                created_at=now,
                **fields,
            )
            s.add(row)
            await s.commit()
            return row

    async def get(self, approval_id: int) -> Approval | None:
        async with self.db.session() as s:
            return await s.get(Approval, approval_id)

    async def decide(self, approval_id: int, user: str, approve: bool) -> tuple[str, Approval | None]:
        """("approved" | "denied", row) when this click decided it; else why not and the row as it is:
        "not_yours", "expired", "already_<state>" or "missing"."""
        now = time.time()
        state = "approved" if approve else "denied"
        async with self.db.session() as s:
            result = await s.exec(
                update(Approval)
                .where(
                    col(Approval.id) == approval_id,
                    col(Approval.state) == "pending",
                    col(Approval.requester_id) == user,
                    col(Approval.expires_at) > now,
                )
                .values(state=state, decided_by=user, decided_at=now)
            )
            await s.commit()
        row = await self.get(approval_id)
        if (result.rowcount or 0) == 1:
            return state, row
        if row is None:
            return "missing", None
        if row.state != "pending":
            return f"already_{row.state}", row
        if row.requester_id != user:
            return "not_yours", row
        await self.expire(approval_id)
        return "expired", await self.get(approval_id)

    async def expire(self, approval_id: int) -> bool:
        """Close a pending approval whose time ran out; False if it was decided meanwhile."""
        async with self.db.session() as s:
            result = await s.exec(
                update(Approval)
                .where(col(Approval.id) == approval_id, col(Approval.state) == "pending")
                .values(state="expired", decided_at=time.time())
            )
            await s.commit()
            return (result.rowcount or 0) == 1
