"""Runs and their steps: what was asked, what ran, how it ended, what it cost.

A run's trace is on the path of every answer, so its writes are few and cheap: the run's row when
it starts, then its steps batched in memory (bot/db/queries/trace.py) and written in one transaction at
each flush and, with the finish, at its end. Each write is SQLAlchemy Core statements in one
transaction on a pooled connection (pre-pinged, and pinned for the whole transaction behind
PgBouncer), redone on a new connection when the old one died (`Database.transaction`). A write
whose commit may have landed checks first, by the values only it wrote, so nothing is written twice.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Update, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel import select as select_models

from bot.db.models import Run, Step, fit_lengths, utcnow
from bot.ops import metrics
from tools.toolkit.errors import InvariantError

if TYPE_CHECKING:
    from bot.db.database import Database

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
# Gives a run's conversation id inside the transaction writing the run (made then if new).
Conversation = Callable[[AsyncConnection], Awaitable[int]]
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


def same_run(values: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The run row `values` made: its start to the microsecond and who and where (for a redo)."""
    keys = ("trigger", "started_at", "team_id", "channel_id", "thread_ts", "user_id", "conversation_id")
    return [RUNS.c[key].is_not_distinct_from(values.get(key)) for key in keys]


async def sqlite_execute(conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]]) -> int | None:
    """Raw SQL on the pooled connection's aiosqlite driver, inside its transaction: one trip to
    SQLite's thread per statement instead of several (the trace is on every answer's path).
    Returns the last row id."""
    raw: Any = (await conn.get_raw_connection()).driver_connection
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


def run_ref(value: str) -> tuple[str, int] | None:
    """A button's name for a run: "42" (its id) -> ("run", 42), "j7" (the job that wrote it at its
    end) -> ("job", 7); None for anything else."""
    kind, digits = ("job", value[1:]) if value.startswith("j") else ("run", value)
    if digits.isascii() and digits.isdigit() and 0 < int(digits) < 2**31:
        return kind, int(digits)
    return None


class Runs:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.started: set[int] = set()  # runs this process started (to interrupt at shutdown)

    @property
    def _fast(self) -> bool:
        return self.db.dialect == "sqlite"

    async def insert(
        self,
        values: dict[str, Any],
        steps: Sequence[dict[str, Any]] = (),
        *,
        conversation: Conversation | None = None,
    ) -> int:
        """Write a run made by `run_values`, with its first `steps`, in one transaction; returns
        its id. `conversation` gives its conversation's id in that transaction (made if new)."""
        values = dict(values)

        async def write(conn: AsyncConnection) -> int:
            if conversation is not None:
                values["conversation_id"] = await conversation(conn)
            run_id = await self._insert_row(conn, values)
            await self._insert_steps(conn, step_rows(run_id, steps) if steps else [])
            return run_id

        async def landed(conn: AsyncConnection) -> int | None:
            return (await conn.execute(select(RUNS.c.id).where(*same_run(values)))).scalar()

        run_id = await self.db.transaction(write, landed=landed, what="run start")
        self.started.add(run_id)
        return run_id

    async def _insert_row(self, conn: AsyncConnection, values: dict[str, Any]) -> int:
        if self._fast:
            run_id = await sqlite_execute(conn, sqlite_insert("run", tuple(values)), [list(values.values())])
            if run_id is None:
                raise InvariantError("the insert returned no run id")
            return run_id
        return int((await conn.execute(INSERT_RUN, values)).scalar_one())

    async def end_in(
        self,
        conn: AsyncConnection,
        run_id: int | None,
        row: dict[str, Any],
        status: str,
        *,
        finished_at: datetime,
        steps: Sequence[dict[str, Any]] = (),
        **fields: Any,
    ) -> int:
        """End a run inside the caller's transaction (an answer's end: with its messages and its
        job's finish): the whole row inserted when it was never written (a quick run writes once),
        else updated; then its last steps. Returns the run's id."""
        begun = row["started_at"]
        if begun.tzinfo is None:
            begun = begun.replace(tzinfo=UTC)
        prompt, completion = fields.get("prompt_tokens", 0), fields.get("completion_tokens", 0)
        values = fit_lengths(
            RUNS,
            {
                "status": status,
                "finished_at": finished_at,
                "duration_ms": (finished_at - begun).total_seconds() * 1000,
                "cost_usd": cost_usd(self.db.prices, row.get("model"), prompt, completion),
            }
            | fields,
        )
        if run_id is None:
            run_id = await self._insert_row(conn, {**row, **values})
        elif self._fast:
            await sqlite_execute(conn, sqlite_update("run", tuple(values)), [[*values.values(), run_id]])
        else:
            params = {"run": run_id} | {f"v_{key}": value for key, value in values.items()}
            await conn.execute(finish_statement(tuple(values)), params)
        await self._insert_steps(conn, step_rows(run_id, steps) if steps else [])
        self.started.discard(run_id)
        return run_id

    async def ended(
        self, conn: AsyncConnection, run_id: int | None, row: dict[str, Any], finished_at: datetime
    ) -> int | None:
        """The run's id if its end, at `finished_at`, is written (a commit whose connection died
        may have landed); `row`, its start, finds it when its id was never known."""
        keys = ("trigger", "started_at", "team_id", "channel_id", "thread_ts", "user_id")
        where = (
            [RUNS.c.id == run_id]
            if run_id is not None
            else [RUNS.c[key].is_not_distinct_from(row.get(key)) for key in keys]
        )
        q = select(RUNS.c.id).where(*where, RUNS.c.finished_at == finished_at)
        return (await conn.execute(q)).scalar()

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
        """End the run and write its last `steps`, in one transaction; `started_at`, `model` (the
        run's, for its cost at MODEL_PRICES) and `trigger` (for the metrics) save a read."""
        self.started.discard(run_id)
        finished_at = utcnow()
        rows = step_rows(run_id, steps) if steps else []

        async def write(conn: AsyncConnection) -> tuple[str | None] | None:
            await self._insert_steps(conn, rows)
            begun, used = started_at, model
            if begun is None or used is None:
                found = (
                    await conn.execute(select(RUNS.c.started_at, RUNS.c.model).where(RUNS.c.id == run_id))
                ).first()
                if found is None:
                    return None
                begun, used = found.started_at, found.model
            if begun is None:
                raise InvariantError("a run without a start time")
            if begun.tzinfo is None:  # SQLite hands datetimes back without their zone
                begun = begun.replace(tzinfo=UTC)
            duration_ms = (finished_at - begun).total_seconds() * 1000
            cost = cost_usd(
                self.db.prices, used, fields.get("prompt_tokens", 0), fields.get("completion_tokens", 0)
            )
            values = fit_lengths(
                RUNS,
                {"status": status, "finished_at": finished_at, "duration_ms": duration_ms, "cost_usd": cost}
                | fields,
            )
            if self._fast and trigger is not None:
                await sqlite_execute(conn, sqlite_update("run", tuple(values)), [[*values.values(), run_id]])
                return (trigger,)
            params = {"run": run_id} | {f"v_{key}": value for key, value in values.items()}
            return ((await conn.execute(finish_statement(tuple(values)), params)).scalar(),)

        async def landed(conn: AsyncConnection) -> tuple[str | None] | None:
            """The earlier commit landed if the row has this finish's own time."""
            q = select(RUNS.c.trigger).where(RUNS.c.id == run_id, RUNS.c.finished_at == finished_at)
            found = (await conn.execute(q)).first()
            return None if found is None else (found.trigger,)

        done = await self.db.transaction(write, landed=landed, what="run finish")
        if done is not None and done[0] is not None:
            metrics.run_finished(done[0], status)

    async def interrupt_running(self, error: str = "interrupted by shutdown") -> int:
        """Mark this process's runs still in flight as interrupted (other processes share the db)."""
        if not self.started:
            return 0
        return await self._interrupt(error, col(Run.id).in_(self.started))

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
        """Safe to redo: a second pass finds the runs no longer `running`."""
        stmt = (
            update(RUNS)
            .where(RUNS.c.status == "running", *where)
            .values(status="interrupted", error=error, finished_at=utcnow())
        )

        async def write(conn: AsyncConnection) -> int:
            return (await conn.execute(stmt)).rowcount or 0

        async def redo(_conn: AsyncConnection) -> int | None:
            return None  # whether or not it landed, doing it again is harmless

        return await self.db.transaction(write, landed=redo, what="interrupt runs")

    async def add_steps(self, run_id: int, steps: Sequence[dict[str, Any]]) -> None:
        """Several steps of one run in one transaction (the trace batches what queued up)."""
        if not steps:
            return
        rows = step_rows(run_id, steps)
        first = rows[0]

        async def write(conn: AsyncConnection) -> bool:
            await self._insert_steps(conn, rows)
            return True

        async def landed(conn: AsyncConnection) -> bool | None:
            """The earlier commit landed if the batch's first step is there (all or none are)."""
            q = select(STEPS.c.id).where(
                STEPS.c.run_id == run_id,
                STEPS.c.created_at == first["created_at"],
                STEPS.c.kind == first["kind"],
                STEPS.c.name == first["name"],
            )
            return True if (await conn.execute(q.limit(1))).first() is not None else None

        await self.db.transaction(write, landed=landed, what="run steps")

    async def _insert_steps(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        keys = tuple(rows[0])
        if self._fast and all(tuple(row) == keys for row in rows):
            await sqlite_execute(conn, sqlite_insert("step", keys), [list(row.values()) for row in rows])
        else:
            await conn.execute(INSERT_STEPS, rows)

    async def add_step(self, run_id: int, **fields: Any) -> None:
        await self.add_steps(run_id, [fields])

    async def of_ref(self, value: str) -> int | None:
        """The id of the run a button names (`run_ref`); None when unknown."""
        ref = run_ref(value)
        if ref is None:
            return None
        kind, number = ref
        return number if kind == "run" else await self.db.jobs.run_of(number)

    async def running_for(self, team: str, user: str, since: datetime) -> int:
        """How many of `user`'s runs started after `since` are still in flight."""
        q = (
            select(func.count())
            .select_from(RUNS)
            .where(
                RUNS.c.team_id == team,
                RUNS.c.user_id == user,
                RUNS.c.status == "running",
                RUNS.c.started_at >= since,
            )
        )

        async def read(conn: AsyncConnection) -> int:
            return int((await conn.execute(q)).scalar_one())

        return await self.db.transaction(read, what="running runs")

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
