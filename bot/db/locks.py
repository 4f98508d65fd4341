"""Count-then-write under a lock, the same on SQLite and Postgres, across processes.

A cap ("at most 10 schedules", "at most N tokens today") is a read and a write: two requests
that both read before either writes both pass. `serialized` runs the read and the write in one
transaction that holds a lock for the cap's keys until it commits:

- SQLite: BEGIN IMMEDIATE takes the database's single write lock at the start, so the reads
  see every committed write and no other writer runs until we commit (busy_timeout waits).
- Postgres: a transaction-scoped advisory lock per key (pg_advisory_xact_lock), taken in sorted
  order so two transactions wanting the same keys cannot deadlock; READ COMMITTED statements
  after it see everything committed before. Released at commit or rollback, also by a dying
  connection, so a crash never leaves a lock behind. Works through PgBouncer's transaction mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from bot.db.database import Database


def lock_id(key: str) -> int:
    """A stable signed 64-bit advisory lock id for `key` (Python's hash() differs per process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


@asynccontextmanager
async def serialized(db: Database, *keys: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the locks of `keys`; commits when the block ends
    (rolls back on an exception)."""
    if db.dialect == "postgresql":
        async with db.engine.connect() as conn, conn.begin():
            for lock in sorted({lock_id(k) for k in keys}):
                await conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
            yield conn
        return
    # pysqlite begins transactions itself (a deferred BEGIN before the first write): in
    # autocommit mode it leaves that to us, and BEGIN IMMEDIATE takes the write lock up front.
    async with db.engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="AUTOCOMMIT")
        # BEGIN IMMEDIATE may wait for the lock; a cancellation cutting that wait short would
        # leave the transaction begun later, unseen, holding the database's one write lock.
        begin = asyncio.ensure_future(conn.exec_driver_sql("BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await begin
                await conn.exec_driver_sql("ROLLBACK")
            raise
        try:
            yield conn
        except BaseException:
            await conn.exec_driver_sql("ROLLBACK")
            raise
        await conn.exec_driver_sql("COMMIT")
