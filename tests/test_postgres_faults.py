"""Issue 22: Postgres faults lose nothing. A `pg_ctl restart -m fast` mid-traffic, PgBouncer's
transaction pooling and a server smaller than the pools, each on a throwaway server of the
test's own (it restarts and squeezes it), and `database_unavailable` on each SQLSTATE of "the
database is not there for us right now"."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from bot.db import Database
from bot.db.database import CommitUnknown, database_unavailable, sqlstate, transient
from bot.db.models import utcnow
from bot.ops.doctor import check_pool
from bot.runtime import Runtime, create_runtime
from bot.settings import load_settings
from bot.work.traced_run import RunFailed, traced_run
from tests import queries
from tests.conftest import make_settings  # not make_bot: runtimes on servers of these tests' own
from tests.fakes.slack_api import FakeSlack
from tests.postgres import PostgresServer, fresh_database, pgbouncer, postgres_server
from tools.toolkit.registry import ToolError

needs_postgres = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").strip(), reason="TEST_DATABASE_URL names no PostgreSQL server"
)
SMALL = 20  # max_connections of the squeezed server: 17 usable by ordinary roles
PATIENCE = 120  # seconds a whole scenario may take on a loaded machine (it takes a few)
FIRE = utcnow()  # a digest fire time: claiming one is an insert that only one caller wins


@pytest.fixture(scope="module")
def small_server() -> Iterator[PostgresServer]:
    """A server with few connection slots, its log at every statement error."""
    with postgres_server(max_connections=SMALL, log_min_error_statement="error") as server:
        yield server


async def _runtime(slack: FakeSlack, url: str, **env: str) -> Runtime:
    return await create_runtime(make_settings(slack, None, url, **env))


async def _traced(rt: Runtime, i: int, steps: int, recorded: dict[int, int]) -> None:
    """One traced run writing `steps` steps, flushing after every second; every fourth one
    fails. Between steps it reads and claims as a turn does, so the trace's writes share the
    server connections with other traffic (behind PgBouncer: are handed different ones)."""
    try:
        async with traced_run(
            rt, "mention", team="T1", channel="C1", user=f"U{i}", thread_ts=f"{i}.0"
        ) as run:
            for n in range(steps):
                assert await rt.db.digests.claim(i, FIRE + timedelta(minutes=n))
                await rt.db.conversations.find("T1", "C1", f"{i}.0")
                await run.ctx.trace.step("tool", f"step {n}", output_chars=n)
                if n % 2:
                    await run.flush()
            recorded[run.id] = steps
            if i % 4 == 0:
                raise ToolError("the tool said no")
            run.finish("ok")
    except RunFailed as failed:
        assert failed.expected and failed.reason == "the tool said no"


async def _assert_every_trace_whole(db: Database, recorded: dict[int, int]) -> None:
    runs = await queries.runs(db)
    assert sorted(r.id for r in runs) == sorted(recorded), "a run row is missing or doubled"
    for row in runs:
        assert row.id is not None
        expected = "failed" if int(row.user_id[1:]) % 4 == 0 else "ok"  # type: ignore[index]
        assert (row.status, row.finished_at is not None) == (expected, True), (row.id, row.status)
        names = [s.name for s in await queries.steps(db, row.id)]
        assert names == [f"step {n}" for n in range(recorded[row.id])], (row.id, names)


def _retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]


@needs_postgres
async def test_a_fast_restart_mid_traffic_loses_no_trace_and_ends_every_run(slack, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.db.database")
    with postgres_server() as server:
        rt = await _runtime(slack, await fresh_database(server.url))
        recorded: dict[int, int] = {}
        flushed, restarted = asyncio.Semaphore(0), asyncio.Event()

        async def one(i: int) -> None:
            """Steps and flushes until the restart is over, and a few after."""
            try:
                async with traced_run(rt, "mention", team="T1", channel="C1", user=f"U{i}") as run:
                    n, after = 0, 0
                    while after < 3:
                        await run.ctx.trace.step("tool", f"step {n}")
                        n += 1
                        await run.flush()
                        if n == 2:
                            flushed.release()
                        after += restarted.is_set()
                        await asyncio.sleep(0.005)
                    recorded[run.id] = n
                    if i % 4 == 0:
                        raise ToolError("the tool said no")
                    run.finish("ok")
            except RunFailed as failed:
                assert failed.expected

        try:
            tasks = [asyncio.create_task(one(i)) for i in range(20)]
            async with asyncio.timeout(PATIENCE):
                for _ in tasks:  # every run is under way, its row and first steps written
                    await flushed.acquire()
                await asyncio.to_thread(server.restart, "fast")
                restarted.set()
                await asyncio.gather(*tasks)
            await _assert_every_trace_whole(rt.db, recorded)
            assert await queries.runs(rt.db, status="running") == []
        finally:
            await rt.close()
    assert _retries(caplog), "the restart never reached a write: the test proved nothing"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a fault was logged as an error"


@needs_postgres
async def test_behind_pgbouncer_transaction_pooling_runs_write_without_prepared_statement_errors(
    slack, small_server: PostgresServer, caplog
) -> None:
    url = await fresh_database(small_server.url)
    migrator = Database(url)
    await migrator.create_schema()  # directly: migrations take a session-level advisory lock
    await migrator.close()
    async with pgbouncer(small_server.url) as port:
        through = make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        rt = await _runtime(slack, through, DB_PGBOUNCER="true", AUTO_MIGRATE="false")
        recorded: dict[int, int] = {}
        try:
            async with asyncio.timeout(PATIENCE):
                await asyncio.gather(*(_traced(rt, i, 6, recorded) for i in range(50)))
            await _assert_every_trace_whole(rt.db, recorded)
            assert await queries.runs(rt.db, status="running") == []
        finally:
            await rt.close()
    logged = small_server.log_text() + "\n".join(r.getMessage() for r in caplog.records)
    assert "prepared statement" not in logged


@needs_postgres
async def test_a_server_smaller_than_the_pools_queues_writes_instead_of_losing_them(
    slack, small_server: PostgresServer, caplog
) -> None:
    """Two processes' pools of 10 + 10 against 20 slots: the refused connects wait and go through."""
    caplog.set_level(logging.INFO, logger="bot.db.database")
    url = await fresh_database(small_server.url)
    pools = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": "10"}
    first = await _runtime(slack, url, **pools)
    second = await _runtime(slack, url, **pools)
    recorded: dict[int, int] = {}
    try:
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*(_traced(rt, i, 4, recorded) for i, rt in enumerate([first, second] * 40)))
        await _assert_every_trace_whole(first.db, recorded)
    finally:
        await first.close()
        await second.close()
    assert [m for m in _retries(caplog) if "53300" in m], "no connect was refused: the test proved nothing"


@needs_postgres
async def test_doctor_fails_a_pool_the_server_cannot_hold_and_passes_one_it_can(
    small_server: PostgresServer,
) -> None:
    base = {"DATABASE_URL": small_server.url, "DB_PROCESSES": "2"}
    ok, line = await check_pool(load_settings(base, need_slack=False)) or (None, "")
    assert ok is False, line
    assert "+ 2 front door + 1 LISTEN) = 36 connections, but the server allows 17" in line
    assert "(max_connections 20 - 3 reserved)" in line
    assert "at most 5 per process" in line  # beside the front door's 2 and the LISTEN connection
    fitting = {**base, "DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "3"}
    ok, line = await check_pool(load_settings(fitting, need_slack=False)) or (None, "")
    assert ok is True and "= 16 connections fit the server's 17" in line, line
    assert await check_pool(load_settings({"DATABASE_URL": "sqlite:///x.db"}, need_slack=False)) is None


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
            "57P01",
        ),
        (asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"), "57P02"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"), "57P03"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), "57P03"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is in recovery mode"), "57P03"),
        (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"), "53300"),
        (asyncpg.exceptions.ConnectionFailureError("connection failure"), "08006"),
    ],
)
def test_each_sqlstate_of_an_absent_server_counts_as_the_database_being_down(
    error: Exception, code: str
) -> None:
    """As SQLAlchemy raises them: a DBAPIError whose cause chain holds asyncpg's error."""
    try:
        try:
            raise error
        except Exception as cause:
            raise sa_exc.DBAPIError("SELECT 1", None, cause) from cause
    except sa_exc.DBAPIError as raised:
        assert sqlstate(raised) == code
        assert database_unavailable(raised) and transient(raised)


def test_a_failed_query_is_not_the_database_being_down() -> None:
    duplicate = asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint")
    try:
        try:
            raise duplicate
        except Exception as cause:
            raise sa_exc.IntegrityError("INSERT", None, cause) from cause
    except sa_exc.IntegrityError as raised:
        assert not database_unavailable(raised) and not transient(raised)
    assert not transient(CommitUnknown("in doubt"))  # never redone: it might have landed


@needs_postgres
async def test_a_terminated_session_is_recognised_and_the_transaction_redone(
    small_server: PostgresServer, caplog
) -> None:
    """pg_terminate_backend (57P01) under an open transaction: asyncpg then reports a confused
    protocol state rather than the SQLSTATE, but the connection is gone, and the work is redone."""
    caplog.set_level(logging.INFO, logger="bot.db.database")
    db = Database(await fresh_database(small_server.url), pool_size=1, max_overflow=0)
    admin = await asyncpg.connect(small_server.url.replace("postgresql+asyncpg://", "postgresql://"))
    attempts: list[int] = []

    async def work(conn) -> int:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        attempts.append(pid)
        if len(attempts) == 1:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        return int((await conn.execute(text("SELECT 41 + 1"))).scalar_one())

    try:
        assert await db.transaction(work) == 42
    finally:
        await admin.close()
        await db.close()
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    assert len(_retries(caplog)) == 1


@needs_postgres
async def test_lost_insert_races_are_no_errors_in_the_server_log(
    small_server: PostgresServer, caplog
) -> None:
    """Duplicate deliveries and double clicks race to insert the same row: the losers insert
    nothing (ON CONFLICT DO NOTHING), so Postgres logs no "duplicate key" ERROR for them."""
    db = Database(await fresh_database(small_server.url))
    await db.create_schema()
    before = len(small_server.log_text())
    n = 10
    try:
        claims, convos, settled, *_ = await asyncio.gather(
            asyncio.gather(*(db.digests.claim(1, FIRE) for _ in range(n))),
            asyncio.gather(*(db.conversations.get_or_create("T1", "C1", "1.0") for _ in range(n))),
            asyncio.gather(*(db.parked.claim(7, "approved") for _ in range(n))),
            asyncio.gather(
                *(db.channel_settings.write("T1", "C1", "model", f"m{i}", "U1") for i in range(n))
            ),
            asyncio.gather(*(db.assistant_contexts.save("D1", "2.0", f"C{i}", "T1") for i in range(n))),
        )
        assert sum(claims) == 1 and sum(settled) == 1
        assert len({c.id for c in convos}) == 1
        assert (await db.channel_settings.rows("T1", "C1"))["model"] in {f"m{i}" for i in range(n)}
        assert await db.assistant_contexts.viewed("D1", "2.0", "T1") in {f"C{i}" for i in range(n)}
    finally:
        await db.close()
    assert "duplicate key" not in small_server.log_text()[before:]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_simple_answers_trace_costs_two_transactions_after_its_run_row(slack, db_url) -> None:
    """The run's row when it starts; then its steps, batched in memory, once at the flush before
    the answer is shown and once with the finish (on either database)."""
    rt = await _runtime(slack, db_url)
    commits: list[int] = []
    event.listen(rt.db.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    try:
        async with traced_run(rt, "mention", team="T1", channel="C1", user="U1") as run:
            await run.ready()
            started = len(commits)
            for n in range(5):
                await run.ctx.trace.step("tool", f"step {n}")
            await run.flush()  # as before an answer is shown
            flushed = len(commits)
            await run.ctx.trace.step("llm", "after the answer")
            run.finish("ok")
        assert (started, flushed - started, len(commits) - flushed) == (1, 1, 1)
        names = [s.name for s in await queries.steps(rt.db, run.id)]
        assert names == [*(f"step {n}" for n in range(5)), "after the answer"]
    finally:
        await rt.close()


@needs_postgres
async def test_work_waits_for_a_server_still_starting_while_a_health_check_is_told_at_once(caplog) -> None:
    """A connect made while the server is away waits for it (what a restart looks like from
    here); `ping` (health checks, doctor) reports the refusal without waiting."""
    caplog.set_level(logging.INFO, logger="bot.db.database")
    server = PostgresServer()  # initialised, not started
    db = Database(server.url)
    try:
        with pytest.raises(OSError):
            await db.ping(timeout=PATIENCE)
        assert not _retries(caplog), "the health check waited"

        async def answer() -> int:
            async with db.engine.connect() as conn:
                return int((await conn.execute(text("SELECT 42"))).scalar_one())

        waiting = asyncio.create_task(answer())
        async with asyncio.timeout(PATIENCE):
            while not _retries(caplog):  # refused once, and waiting
                await asyncio.sleep(0.01)
        await asyncio.to_thread(server.start)
        assert await waiting == 42
    finally:
        await db.close()
        server.remove()
