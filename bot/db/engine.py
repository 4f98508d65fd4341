"""The database handle: one engine per process, and the query modules hung off it by aggregate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import bot.db.models  # noqa: F401  (registers every table on SQLModel.metadata)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


class Database:
    """Async access to the database; one per process, shared by every listener.

    Queries live in one module per aggregate and are reached as `db.events`, `db.conversations`,
    `db.runs`, `db.feedback` and `db.digests`, so a call site names what it touches.
    """

    def __init__(self, url: str) -> None:
        from bot.db.conversations import Conversations
        from bot.db.digests import Digests
        from bot.db.events import Events
        from bot.db.feedback import Feedbacks
        from bot.db.runs import Runs

        self.url = url
        self.engine = make_engine(url)
        self.events = Events(self)
        self.conversations = Conversations(self)
        self.runs = Runs(self)
        self.feedback = Feedbacks(self)
        self.digests = Digests(self)

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    async def close(self) -> None:
        await self.runs.close()  # its writer connection is held, not pooled
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout waits instead of failing on a lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
