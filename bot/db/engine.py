"""The database handle: one engine per process, and the query modules hung off it by aggregate."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import bot.db.models  # noqa: F401  (registers every table on SQLModel.metadata)

log = logging.getLogger(__name__)


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
    `db.runs`, `db.feedback`, `db.digests`, `db.leases`, `db.turns`, `db.approvals`,
    `db.parked`, `db.channel_settings` and `db.usage`, so a call site names what it touches.
    """

    def __init__(self, url: str, prices: Mapping[str, tuple[float, float]] | None = None) -> None:
        from bot.db.approvals import Approvals
        from bot.db.assistant_contexts import AssistantContexts
        from bot.db.conversations import Conversations
        from bot.db.digests import Digests
        from bot.db.events import Events
        from bot.db.feedback import Feedbacks
        from bot.db.leases import Leases
        from bot.db.parked import ParkedCalls
        from bot.db.runs import Runs
        from bot.db.settings import ChannelSettings
        from bot.db.turns import Turns
        from bot.db.usage import UsageQueries

        self.url = url
        self.prices: Mapping[str, tuple[float, float]] = prices or {}  # MODEL_PRICES: a run's cost
        self.engine = make_engine(url)
        self.events = Events(self)
        self.conversations = Conversations(self)
        self.runs = Runs(self)
        self.feedback = Feedbacks(self)
        self.digests = Digests(self)
        self.assistant_contexts = AssistantContexts(self)
        self.leases = Leases(self)
        self.turns = Turns(self)
        self.approvals = Approvals(self)
        self.parked = ParkedCalls(self)
        self.channel_settings = ChannelSettings(self)
        self.usage = UsageQueries(self)

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


def fit_lengths(table: Any, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every string longer than its column cut (and logged), for Core writes too.

    SQLite ignores VARCHAR lengths, Postgres refuses the row: without this a long value (a cron
    expression, a model name, a model-chosen id) works in tests and kills the command in production.
    Values are checked where they enter; this is the net under those checks.
    """
    out = dict(values)
    for key, value in values.items():
        column = table.c.get(key)
        length = getattr(column.type, "length", None) if column is not None else None
        if length and isinstance(value, str) and len(value) > length:
            log.warning("%s.%s: %d characters cut to %d", table.name, key, len(value), length)
            out[key] = value[: length - 1] + "…"
    return out


@event.listens_for(Session, "before_flush")
def _fit_column_lengths(session: Session, _context: Any, _instances: Any) -> None:
    """The same net for ORM writes."""
    for obj in [*session.new, *session.dirty]:
        mapper = inspect(obj).mapper
        values = {c.key: getattr(obj, c.key, None) for c in mapper.columns}
        for key, value in fit_lengths(mapper.local_table, values).items():
            if value is not values[key]:
                setattr(obj, key, value)
