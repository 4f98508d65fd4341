"""Runs and their steps: what was asked, what ran, how it ended, what it cost.

A run's trace is on the path of every answer, and an ORM session per write (checkout, load,
flush, commit, reset: five to eight round trips to SQLite's thread) cost more than the agent loop
itself. So run and step writes are single SQLAlchemy Core statements on one long-lived
autocommit connection: three round trips each, no pool checkout, no transaction to end.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, Update, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel import select as select_models

from bot import metrics
from bot.db.engine import fit_lengths
from bot.db.models import Run, Step, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database

RUNS = Run.__table__  # type: ignore[attr-defined]  # sqlmodel sets it on every table model
STEPS = Step.__table__  # type: ignore[attr-defined]
# Built once: a statement made per write (values coerced, cache key computed) cost as much as
# the write itself, and so did a table-model instance per run; rows go in as plain parameters.
INSERT_RUN = insert(RUNS).returning(RUNS.c.id)
INSERT_STEPS = insert(STEPS)


def _defaults(model: Any, *computed: str) -> dict[str, Any]:
    """The plain defaults of a table model's optional fields (Core applies no pydantic ones)."""
    fields = model.model_fields.items()
    return {n: f.default for n, f in fields if not f.is_required() and n not in ("id", *computed)}


RUN_DEFAULTS = _defaults(Run, "started_at")
STEP_DEFAULTS = _defaults(Step, "created_at")


def run_values(trigger: str, **fields: Any) -> dict[str, Any]:
    """A run's row, not yet written, as plain values: its clock starts now."""
    return fit_lengths(RUNS, {**RUN_DEFAULTS, "trigger": trigger, "started_at": utcnow(), **fields})


@functools.lru_cache(maxsize=64)
def finish_statement(keys: tuple[str, ...]) -> Update:
    """The UPDATE that ends a run, for one set of fields (a handful of sets occur)."""
    values: dict[str, Any] = {key: bindparam(f"v_{key}") for key in keys}
    return update(RUNS).where(RUNS.c.id == bindparam("run")).values(values).returning(RUNS.c.trigger)


@functools.lru_cache(maxsize=64)
def sqlite_insert(table: str, keys: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{key}"' for key in keys)
    return f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join("?" * len(keys))})'


@functools.lru_cache(maxsize=64)
def sqlite_update(table: str, keys: tuple[str, ...]) -> str:
    assignments = ", ".join(f'"{key}" = ?' for key in keys)
    return f'UPDATE "{table}" SET {assignments} WHERE id = ?'


def sqlite_value(value: Any) -> Any:
    """As SQLAlchemy's SQLite DateTime stores it (naive text, microseconds), so reads agree."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


def step_rows(run_id: int, steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a Core insert: Core knows no pydantic default factories, so fill them here."""
    now = utcnow()
    for row in steps:
        metrics.step_recorded(row)
    return [
        fit_lengths(STEPS, {**STEP_DEFAULTS, "run_id": run_id, "created_at": now, **row}) for row in steps
    ]


def cost_usd(
    prices: Mapping[str, tuple[float, float]], model: str | None, prompt: int, completion: int
) -> float | None:
    """What the tokens cost at the price table's rates; None for a model it does not list."""
    if model is None or not (prompt or completion):
        return 0.0 if model is not None and model in prices else None
    rate = prices.get(model)
    if rate is None:
        return None
    return round((prompt * rate[0] + completion * rate[1]) / 1_000_000, 6)


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: set[int] = set()  # runs this process started (to interrupt at shutdown)
        self._conn: AsyncConnection | None = None
        self._raw: tuple[AsyncConnection, Any] | None = None
        self._lock = asyncio.Lock()

    async def _write(
        self, statement: Executable, rows: Sequence[dict[str, Any]] | dict[str, Any] | None = None
    ) -> Any:
        """One statement on the writer connection, committed on its own (autocommit)."""
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                conn = await self.db.engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                return await self._conn.execute(statement, rows)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    self._conn = None  # a fresh connection next time
                raise

    async def _sqlite(self, sql: str, rows: Sequence[Sequence[Any]]) -> int | None:
        """The same writer connection, below SQLAlchemy: one trip to SQLite's thread per write
        instead of several (the trace is on every answer's path). Returns the last row id."""
        async with self._lock:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                conn = await self.db.engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if self._raw is None or self._raw[0] is not self._conn:
                self._raw = (self._conn, (await self._conn.get_raw_connection()).driver_connection)
            raw: Any = self._raw[1]  # aiosqlite's connection under SQLAlchemy's
            converted = [[sqlite_value(v) for v in row] for row in rows]
            try:
                if len(converted) == 1:
                    cursor = await raw.execute(sql, converted[0])
                else:
                    cursor = await raw.executemany(sql, converted)
            except sqlite3.Error as exc:  # as SQLAlchemy would raise it: callers catch those
                raise DBAPIError.instance(sql, converted, exc, sqlite3.Error) from exc
            last: int | None = cursor.lastrowid
            return last

    @property
    def _fast(self) -> bool:
        return self.db.dialect == "sqlite"

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def insert(self, values: dict[str, Any]) -> int:
        """Write a run made by `run_values`; returns its id."""
        if self._fast:
            sql = sqlite_insert("run", tuple(values))
            run_id = await self._sqlite(sql, [list(values.values())])
            assert run_id is not None
        else:
            run_id = (await self._write(INSERT_RUN, values)).scalar_one()
        self.started.add(run_id)
        return run_id

    async def start(self, trigger: str, **fields: Any) -> Run:
        values = run_values(trigger, **fields)
        return Run(id=await self.insert(values), **values)

    async def finish(
        self,
        run_id: int,
        status: str,
        *,
        started_at: datetime | None = None,
        steps: Sequence[dict[str, Any]] = (),
        model: str | None = None,
        trigger: str | None = None,
        **fields: Any,
    ) -> None:
        """End the run, writing its last `steps` first; `started_at`, `model` (the run's, for its
        cost at MODEL_PRICES) and `trigger` (for the metrics) save a read."""
        self.started.discard(run_id)
        finished_at = utcnow()
        await self.add_steps(run_id, steps)
        if started_at is None or model is None:
            found = (
                await self._write(select(RUNS.c.started_at, RUNS.c.model).where(RUNS.c.id == run_id))
            ).first()
            if found is None:
                return
            started_at, model = found.started_at, found.model
        assert started_at is not None
        if started_at.tzinfo is None:  # SQLite hands datetimes back without their zone
            started_at = started_at.replace(tzinfo=UTC)
        duration_ms = (finished_at - started_at).total_seconds() * 1000
        cost = cost_usd(
            self.db.prices, model, fields.get("prompt_tokens", 0), fields.get("completion_tokens", 0)
        )
        values = fit_lengths(
            RUNS,
            {"status": status, "finished_at": finished_at, "duration_ms": duration_ms, "cost_usd": cost}
            | fields,
        )
        if self._fast and trigger is not None:
            await self._sqlite(sqlite_update("run", tuple(values)), [[*values.values(), run_id]])
        else:
            params = {"run": run_id} | {f"v_{key}": value for key, value in values.items()}
            trigger = (await self._write(finish_statement(tuple(values)), params)).scalar()
        if trigger is not None:
            metrics.run_finished(trigger, status)

    async def interrupt_running(self, error: str = "interrupted by shutdown") -> int:
        """Mark this process's runs still in flight as interrupted (other processes share the db)."""
        if not self.started:
            return 0
        async with self.db.session() as s:
            result = await s.exec(
                update(Run)
                .where(col(Run.status) == "running", col(Run.id).in_(self.started))
                .values(status="interrupted", error=error, finished_at=utcnow())
            )
            await s.commit()
            return result.rowcount or 0

    async def interrupt_conversation(self, conversation_id: int, error: str) -> int:
        """Runs of one conversation still `running`: their process died (the caller holds the
        conversation's lease, so no live process is running them)."""
        return await self._interrupt(error, col(Run.conversation_id) == conversation_id)

    async def interrupt_command(
        self, trigger: str, *, team: str, user: str, channel: str, since: datetime, error: str
    ) -> int:
        """Runs of a slash command still `running` since its job was accepted: the job's process
        died (the caller holds the job's lease). Runs carry no job id, so the same person's same
        command in the same channel, started since, stands for it."""
        return await self._interrupt(
            error,
            col(Run.trigger) == trigger,
            col(Run.team_id) == team,
            col(Run.user_id) == user,
            col(Run.channel_id) == channel,
            col(Run.started_at) >= since,
        )

    async def _interrupt(self, error: str, *where: Any) -> int:
        async with self.db.session() as s:
            result = await s.exec(
                update(Run)
                .where(col(Run.status) == "running", *where)
                .values(status="interrupted", error=error, finished_at=utcnow())
            )
            await s.commit()
            return result.rowcount or 0

    async def add_steps(self, run_id: int, steps: Sequence[dict[str, Any]]) -> None:
        """Several steps of one run in one insert (the trace batches what queued up)."""
        if not steps:
            return
        rows = step_rows(run_id, steps)
        keys = tuple(rows[0])
        if self._fast and all(tuple(row) == keys for row in rows):
            await self._sqlite(sqlite_insert("step", keys), [list(row.values()) for row in rows])
        else:
            await self._write(INSERT_STEPS, rows)

    async def add_step(self, run_id: int, **fields: Any) -> None:
        await self.add_steps(run_id, [fields])

    async def running_for(self, team: str, user: str, since: datetime) -> int:
        """How many of `user`'s runs started after `since` are still in flight."""
        async with self.db.session() as s:
            q = (
                select_models(func.count())
                .select_from(Run)
                .where(
                    col(Run.team_id) == team,
                    col(Run.user_id) == user,
                    col(Run.status) == "running",
                    col(Run.started_at) >= since,
                )
            )
            return int((await s.exec(q)).one())

    async def recent(self, user_id: str, limit: int = 5, team: str | None = None) -> list[Run]:
        """A user's newest runs, newest first (the Home tab lists them); with `team`, only that
        workspace's (a Grid user has one id in every workspace of the org)."""
        async with self.db.session() as s:
            q = select_models(Run).where(col(Run.user_id) == user_id)
            if team is not None:
                q = q.where(col(Run.team_id) == team)
            q = q.order_by(col(Run.id).desc()).limit(limit)
            return list((await s.exec(q)).all())

    # --- reading, for operators (`switchboard runs`) -------------------------------------------
    async def get(self, run_id: int) -> Run | None:
        async with self.db.session() as s:
            return await s.get(Run, run_id)

    async def steps(self, run_id: int) -> list[Step]:
        async with self.db.session() as s:
            q = select_models(Step).where(Step.run_id == run_id).order_by(col(Step.id))
            return list((await s.exec(q)).all())

    async def latest(self, limit: int = 20) -> list[Run]:
        async with self.db.session() as s:
            q = select_models(Run).order_by(col(Run.id).desc()).limit(limit)
            return list((await s.exec(q)).all())
