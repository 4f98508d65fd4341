"""Leases: one owner at a time for a piece of work, until it expires (then another may take it).

Plain INSERT / conditional UPDATE / DELETE, so the same code is atomic on SQLite and Postgres
without advisory locks: the UPDATE that takes over an expired lease matches only while the lease
is still expired (or already ours), and the database lets exactly one such UPDATE win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlmodel import col, delete, or_, select, update

from bot.db.models import Lease

if TYPE_CHECKING:
    from bot.db.engine import Database

log = logging.getLogger(__name__)


def process_owner() -> str:
    """A name for this process that no other process (here or on another host) shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.owner = process_owner()  # the default owner: this process

    async def acquire(self, key: str, owner: str, ttl: float) -> bool:
        """Take `key` for `ttl` seconds: free, expired or already ours -> True; held by another -> False."""
        now = time.time()
        if await self.db.insert_new([Lease(key=key, owner=owner, expires_at=now + ttl, acquired_at=now)]):
            return True  # ON CONFLICT DO NOTHING: a held lease is normal, not an error in the log
        async with self.db.session() as s:
            result = await s.exec(
                update(Lease)
                .where(
                    col(Lease.key) == key,
                    or_(col(Lease.expires_at) < now, col(Lease.owner) == owner),
                )
                .values(owner=owner, expires_at=now + ttl, acquired_at=now)
            )
            await s.commit()
            return (result.rowcount or 0) == 1

    async def renew(self, key: str, owner: str, ttl: float) -> bool:
        """Extend our lease; False when it is no longer ours (taken over after it expired)."""
        async with self.db.session() as s:
            result = await s.exec(
                update(Lease)
                .where(col(Lease.key) == key, col(Lease.owner) == owner)
                .values(expires_at=time.time() + ttl)
            )
            await s.commit()
            return (result.rowcount or 0) == 1

    async def release(self, key: str, owner: str) -> bool:
        """Give the lease up; False when it was not ours (any more)."""
        async with self.db.session() as s:
            result = await s.exec(delete(Lease).where(col(Lease.key) == key, col(Lease.owner) == owner))
            await s.commit()
            return (result.rowcount or 0) == 1

    async def holder(self, key: str) -> Lease | None:
        """The current lease on `key`, expired or not (None when free)."""
        async with self.db.session() as s:
            return (await s.exec(select(Lease).where(Lease.key == key))).first()

    async def wait_acquire(
        self, key: str, owner: str, ttl: float, *, poll: float = 0.1, timeout: float | None = None
    ) -> bool:
        """Acquire, polling while another owner holds it; False if `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not await self.acquire(key, owner, ttl):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)
        return True

    @contextlib.asynccontextmanager
    async def kept(self, key: str, owner: str, ttl: float) -> AsyncIterator[LeaseKeeper]:
        """Renew an acquired lease every ttl/3 while the body runs, release it after.

        The keeper's `lost` turns True if a renewal finds the lease taken over, so the body can
        stop before doing work another owner now does.
        """
        keeper = LeaseKeeper()
        task = asyncio.create_task(self._renew_loop(key, owner, ttl, keeper), name=f"lease {key}")
        try:
            yield keeper
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not keeper.lost:
                await asyncio.shield(self.release(key, owner))

    async def _renew_loop(self, key: str, owner: str, ttl: float, keeper: LeaseKeeper) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.renew(key, owner, ttl):
                    log.warning("lease %s was taken over by another owner", key)
                    keeper.lost = True
                    return
            except Exception:  # a failed renewal is retried; the lease only lapses after ttl
                log.exception("could not renew lease %s", key)


class LeaseKeeper:
    """What the body of `Leases.kept` can ask: is the lease still ours?"""

    def __init__(self) -> None:
        self.lost = False
