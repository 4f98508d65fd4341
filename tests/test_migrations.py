"""Issue 14: Alembic migrations: stamping old databases, refusing when behind, racing starts."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from bot.db import Database, schema
from bot.runtime import create_runtime
from bot.settings import ConfigError
from tests import queries
from tests.bot_process import bot_env, free_port
from tests.conftest import make_settings  # not make_bot: its bots start on a premigrated copy

ROOT = Path(__file__).resolve().parents[1]


async def upgrade_to(db: Database, revision: str) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(schema.alembic_config(c), revision))


async def current_revision(db: Database) -> str | None:
    return (await schema.state(db.engine)).current


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def wait_ready(http: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process) -> bool:
    """Poll /readyz until 200; False if the process exits first or 60 s pass."""
    for _ in range(1200):
        if proc.returncode is not None:
            return False
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    return False


async def test_models_py_matches_the_migrations(db_url) -> None:
    """Fails when a table or column is added to models.py without a revision: run
    `python -m bot migrate --autogenerate "what changed"` and commit the file it writes."""
    heads = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: add a merge revision (alembic merge)"
    db = Database(db_url)
    try:
        await db.create_schema()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata
                )
            )
    finally:
        await db.close()
    assert diff == [], f"bot/db/models.py differs from bot/db/migrations: {diff}"


async def test_a_database_made_before_migrations_is_stamped_and_upgraded(slack, llm, db_url) -> None:
    db = Database(db_url)
    await upgrade_to(db, schema.BASE_REVISION)  # today's tables, as create_all made them
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
        await conn.execute(
            text(
                "INSERT INTO run (trigger, status, prompt_tokens, completion_tokens, llm_calls, started_at) "
                "VALUES ('mention', 'ok', 1, 2, 1, CURRENT_TIMESTAMP)"
            )
        )
    assert (await schema.state(db.engine)).status == "unstamped"
    await db.close()
    rt = await create_runtime(make_settings(slack, llm, db_url))
    try:
        assert await current_revision(rt.db) == schema.head()
        (kept,) = await queries.runs(rt.db, trigger="mention")
        assert kept.prompt_tokens == 1
    finally:
        await rt.close()


async def test_serve_and_clock_refuse_a_database_behind_and_migrate_fixes_it(
    slack, llm, db_url, tmp_path
) -> None:
    db = Database(db_url)
    await upgrade_to(db, schema.BASE_REVISION)
    env = bot_env(slack, llm, db_url, AUTO_MIGRATE="false", RUN_SCHEDULER="true")
    for command_name in ("serve", "clock"):
        code, _, err = await run_cli(command_name, env=env, cwd=tmp_path)
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert "behind (revision 0001" in lines[0] and "switchboard migrate" in lines[0]
    assert await current_revision(db) == schema.BASE_REVISION  # refusing changed nothing
    code, out, err = await run_cli("migrate", env=env, cwd=tmp_path)
    assert code == 0, err
    assert f"from revision 0001 to {schema.head()}" in out
    code, out, _ = await run_cli("migrate", env=env, cwd=tmp_path)
    assert code == 0 and "already current" in out
    assert await current_revision(db) == schema.head()
    await db.close()


async def test_auto_migrate_upgrades_a_database_behind(slack, llm, db_url) -> None:
    db = Database(db_url)
    await upgrade_to(db, schema.BASE_REVISION)
    await db.close()
    rt = await create_runtime(make_settings(slack, llm, db_url, AUTO_MIGRATE="true"))
    try:
        assert await current_revision(rt.db) == schema.head()
    finally:
        await rt.close()


async def test_a_database_from_a_newer_version_is_refused_even_with_auto_migrate(slack, llm, db_url) -> None:
    db = Database(db_url)
    await db.create_schema()
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    await db.close()
    with pytest.raises(schema.SchemaError, match="newer Switchboard"):
        await create_runtime(make_settings(slack, llm, db_url, AUTO_MIGRATE="true"))


async def test_three_processes_starting_together_on_an_empty_database(slack, llm, db_url, tmp_path) -> None:
    """The old create_all at start raced: CREATE TABLE twice, or a process seeing half a schema."""

    ports = [free_port() for _ in range(3)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            cwd=tmp_path,
            env=bot_env(slack, llm, db_url, AUTO_MIGRATE="true", PORT=str(port), HOST="127.0.0.1"),
            stdout=-1,
            stderr=-1,
        )
        for port in ports
    ]
    try:
        async with aiohttp.ClientSession() as http:
            ready = [await wait_ready(http, port, proc) for port, proc in zip(ports, procs, strict=True)]
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        results = [await asyncio.wait_for(p.communicate(), 300) for p in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    assert all(ready), [err.decode()[-2000:] for _, err in results]
    db = Database(db_url)
    assert await current_revision(db) == schema.head()
    await db.close()


def test_a_missing_postgres_driver_says_which_extra_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(
        ConfigError, match=r"asyncpg, is not installed: pip install 'switchboard\[postgres\]'"
    ):
        Database("postgresql+asyncpg://user@db.example/switchboard")
