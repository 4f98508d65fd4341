"""SQLite only: the file the front door records deliveries in, beside the main database.

SQLite has one write lock per file. Answer work on the main loop holds the main file's lock for
as long as its transactions take, awaits included, and on a busy loop that is tens of
milliseconds; a delivery recorded in the same file waited behind them (recording p99 0.8 s at
20 mentions/s). Here the door's group commits touch only this file, whose other writers are
other processes' doors and the engine's deletes. The engine reads the rows past the last one it
moved (`arrivals`) and inserts them, by key, in its claim's transaction (ON CONFLICT: a row moved
twice, by two processes or after a restart, is kept once); the door's recordings delete them now
and then, only up to what that process has committed, and `forget` the rest at a stop. On
Postgres there is no such lock and the door records straight into the job table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, delete, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from bot.db.counting import READS_ONLY
from bot.db.database import make_engine, sqlite_path
from bot.db.patience import impatient
from bot.db.queue.jobs import NewJob, recorded

MOVE_BATCH = 500
FORGET_BATCH = 20  # moved rows the door deletes with its next recording, at the least

INBOX = Table(
    "inbox",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("key", String(200), nullable=False, unique=True),
    Column("queue", String(300)),
    Column("person", String(100)),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    sqlite_autoincrement=True,  # ids never reused: a process's mark (the last id it moved) holds
)


def inbox_url(database_url: str) -> str | None:
    """The inbox beside a SQLite file (None for Postgres, or a database in memory)."""
    path = sqlite_path(database_url)
    return None if path is None else f"sqlite+aiosqlite:///{path}-inbox"


@dataclass
class Marks:
    """The last inbox row this process's engine moved into the job table, and the last deleted:
    shared by the engine (main loop) and the door's inbox (its own thread); plain ints."""

    moved: int = 0
    deleted: int = 0


class Inbox:
    """One per event loop (an engine is bound to the loop it connects on). `marks`: the door's
    recording transaction also deletes the rows its engine has moved, now and then, so deleting
    them costs no transaction of its own."""

    def __init__(self, url: str, marks: Marks | None = None) -> None:
        self.marks = marks if marks is not None else Marks()
        self.engine = make_engine(url)
        self._reader = self.engine.execution_options(**{READS_ONLY: True})  # SELECTs begin nothing
        self._made = False

    async def _make(self) -> None:
        if not self._made:
            async with self.engine.begin() as conn:
                await conn.execute(CreateTable(INBOX, if_not_exists=True))  # doors and engines race
            self._made = True

    async def add(self, jobs: list[NewJob]) -> list[tuple[int, bool]]:
        """Record in one transaction; a key already waiting here keeps its first row (False)."""
        await self._make()
        now = datetime.now(UTC).replace(tzinfo=None)  # stored naive, read back as UTC
        rows = [{**recorded(j), "created_at": now} for j in jobs]
        moved = self.marks.moved
        forgetting = moved - self.marks.deleted >= FORGET_BATCH
        with impatient():
            async with self.engine.begin() as conn:
                if forgetting:
                    await conn.execute(delete(INBOX).where(INBOX.c.id <= moved))
                made = await conn.execute(
                    sqlite.insert(INBOX)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(INBOX.c.id, INBOX.c.key)
                )
                ids = {key: row_id for row_id, key in made}
                new = set(ids)
                if missing := [j.key for j in jobs if j.key not in ids]:
                    known = select(INBOX.c.id, INBOX.c.key).where(INBOX.c.key.in_(missing))
                    found = await conn.execute(known)
                    ids.update({key: row_id for row_id, key in found})
        if forgetting:
            self.marks.deleted = max(self.marks.deleted, moved)
        return [(ids[j.key], j.key in new) for j in jobs]

    async def arrivals(self, after: int) -> list[tuple[int, NewJob]]:
        """What waits here past row `after` (the last this process moved), oldest first; a read
        without a transaction. Rows are numbered in commit order (one writer at a time)."""
        await self._make()
        async with self._reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(INBOX).where(INBOX.c.id > after).order_by(INBOX.c.id).limit(MOVE_BATCH)
                )
            ).all()
        return [
            (
                r.id,
                NewJob(
                    r.kind, r.key, json.loads(r.payload), r.queue, r.person, created_at=_utc(r.created_at)
                ),
            )
            for r in rows
        ]

    async def forget(self, upto: int) -> None:
        """Delete rows up to `upto`, once their jobs are committed in the job table: the engine's
        close, for the moved rows the door had not deleted yet (it deletes only with a next
        recording, and a stopping process makes none). Left, they are moved again by the next
        process to start: harmless while their jobs exist (kept once, by key), but a job that
        retention purged meanwhile would be made again and the message answered twice."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(INBOX).where(INBOX.c.id <= upto))
        self.marks.deleted = max(self.marks.deleted, upto)

    async def close(self) -> None:
        await self.engine.dispose()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)
