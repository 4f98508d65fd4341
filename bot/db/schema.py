"""Schema migrations (Alembic): what revision a database is at, and bringing it to the newest.

Every process checks at start; only one migrates at a time (a PostgreSQL advisory lock, or a
lock file beside a SQLite database), so processes starting together on an empty database
neither race `CREATE TABLE` nor see half a schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tools.toolkit.errors import ConfigurationError, InvariantError

MIGRATIONS = Path(__file__).with_name("migrations")
BASE_REVISION = "0001"  # today's schema when migrations arrived: databases made before are stamped
LOCK_KEY = 0x5357_4244  # "SWBD": the advisory lock every migrating process takes
MIGRATE_HINT = "run `switchboard migrate` (or `python -m bot migrate`)"


class SchemaError(ConfigurationError):
    """The database's schema does not match this code; the message says what to run."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise InvariantError("the migrations have no head revision")
    return revision


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the alembic_version row, None when there is none
    has_tables: bool  # any of our tables, stamped or not

    @property
    def status(self) -> str:
        if self.current == head():
            return "current"
        if self.current is None:
            return "unstamped" if self.has_tables else "empty"
        return "behind" if self.current in known_revisions() else "unknown"

    def describe(self) -> str:
        return {
            "current": f"the schema is current (revision {head()})",
            "empty": f"the database has no schema yet: {MIGRATE_HINT}",
            "unstamped": f"the database predates migrations and needs stamping: {MIGRATE_HINT}",
            "behind": f"the database schema is behind (revision {self.current}, this version needs "
            f"{head()}): {MIGRATE_HINT}",
            "unknown": f"the database schema is at revision {self.current}, which this version does "
            "not know: it was migrated by a newer Switchboard; upgrade this one",
        }[self.status]


def _state(conn: Connection) -> SchemaState:
    current = MigrationContext.configure(conn).get_current_revision()
    tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    return SchemaState(current=current, has_tables=bool(tables))


async def state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


def _upgrade(conn: Connection) -> None:
    cfg = alembic_config(conn)
    found = _state(conn)
    if found.current is None and found.has_tables:
        command.stamp(cfg, BASE_REVISION)
    command.upgrade(cfg, "head")


@contextlib.asynccontextmanager
async def _sqlite_lock(url: str) -> AsyncIterator[None]:
    path = url.split(":///", 1)[-1]
    if not path or path == ":memory:":
        yield
        return
    lock = await asyncio.to_thread(Path(f"{path}.migrate-lock").open, "a")
    try:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


async def migrate(engine: AsyncEngine, url: str) -> SchemaState:
    """Stamp a database made before migrations, then upgrade to the newest revision; returns the
    state found before (whoever held the lock first may already have done the work)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            await conn.commit()
            try:
                before = await conn.run_sync(_state)
                await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                await conn.commit()
        return before
    async with _sqlite_lock(url), engine.connect() as conn:
        before = await conn.run_sync(_state)
        await conn.run_sync(_upgrade)
        await conn.commit()
    return before


async def prepare(engine: AsyncEngine, url: str, auto_migrate: bool) -> None:
    """Serve only on a current schema: migrate when allowed, else refuse with what to run."""
    found = await state(engine)
    if found.status == "current":
        return
    if found.status == "unknown" or not auto_migrate:
        raise SchemaError(found.describe()[0].upper() + found.describe()[1:] + ".")
    await migrate(engine, url)


def new_revision(conn: Connection, message: str) -> Any:
    """Write a revision file for what models.py has that the migrations do not (developers)."""
    cfg = alembic_config(conn)
    command.upgrade(cfg, "head")
    numbered = [int(r) for r in known_revisions() if r.isdigit()]
    rev_id = f"{max(numbered, default=0) + 1:04d}"  # 0001, 0002, ...: the order reads at a glance
    return command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
