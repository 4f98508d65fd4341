"""Shared fixtures: the loopback fakes and the bot itself, running over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bot.db import Database
from bot.runtime import create_runtime
from bot.settings import Settings, database_url, load_settings
from bot.slack.server import Running, start_http
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import block_actions_body, command_body, event_body, post_signed
from tests.fakes.weather import FakeOpenMeteo

SIGNING_SECRET = "test-signing-secret-0123456789"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    fake.add_user("U1", "alice", tz="Europe/Berlin")
    fake.add_user("U2", "bob", tz="Asia/Karachi")
    fake.add_user("UADMIN", "admin", is_admin=True)
    fake.add_channel("C1", "general", members=("U1", "U2", "UADMIN"))
    fake.add_channel("C2", "random", members=("U1", "U2"))
    fake.add_channel("D1", "dm-alice", members=("U1",), is_im=True)
    yield fake
    await fake.stop()
    assert fake.shape_errors == [], "the fake Slack answered with fields Slack's own captures do not have"


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.schema_errors == [], "the bot sent a request the OpenAI schema rejects"
    assert fake.shape_errors == [], "the bot sent an orphaned or unanswered tool call"


@pytest.fixture
async def weather() -> AsyncIterator[FakeOpenMeteo]:
    async with FakeOpenMeteo() as fake:
        yield fake


@pytest.fixture
async def db_url(tmp_path) -> AsyncIterator[str]:
    """An empty database of its own for each test: SQLite, or on the PostgreSQL server named by
    TEST_DATABASE_URL (`.ci/run` starts one and runs the suite a second time)."""
    server = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not server:
        yield f"sqlite+aiosqlite:///{tmp_path}/switchboard.db"
        return
    async with postgres_database(server) as url:
        yield url


@contextlib.asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    """CREATE DATABASE for one test, DROP it (connections and all) after."""
    import asyncpg

    name = f"sb_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(str(make_url(server).set(database=name).render_as_string(hide_password=False)))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest revision, made once per worker: make_bot copies it to a
    test's empty database instead of running every migration for each bot (~0.15 s of CPU each,
    hundreds of bots). Tests of migrating itself start from an empty database, not through it."""
    path = tmp_path_factory.mktemp("migrated") / "switchboard.db"

    async def build() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.create_schema()
        await db.close()  # checkpoints the WAL: the one file is the whole database

    with ThreadPoolExecutor(1) as thread:  # no event loop of a test's here, but be sure
        thread.submit(asyncio.run, build()).result()
    return path


def premigrated(url: str, template: Path) -> None:
    """An SQLite database file that does not exist yet starts as a copy of the migrated one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    if not Path(parsed.database).exists():
        shutil.copyfile(template, parsed.database)


def make_settings(slack: FakeSlack, llm: FakeOpenAI | None, db_url: str, **env: str) -> Settings:
    base = {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": db_url,
        "LLM_MAX_RETRIES": "0",
        "RUN_SCHEDULER": "false",
        "AUTO_MIGRATE": "true",
    }
    if llm is not None:
        base |= {"OPENAI_API_KEY": "sk-test-key-0123456789", "OPENAI_BASE_URL": llm.base_url}
    return load_settings({**base, **env})


class Bot:
    """The app under test, served on a loopback port, and a Slack-like client to drive it."""

    def __init__(self, settings: Settings, **scheduler_options: Any) -> None:
        self.settings = settings
        self.scheduler_options = scheduler_options
        self.running: Running | None = None
        self.http = aiohttp.ClientSession()

    @property
    def rt(self):
        assert self.running is not None
        return self.running.rt

    @property
    def url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.port}"

    async def start(self) -> Bot:
        rt = await create_runtime(self.settings)
        self.running = await start_http(rt, "127.0.0.1", 0, **self.scheduler_options)
        return self

    async def restart(self) -> None:
        """A new process on the same database: nothing in memory survives."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop(drain=5)
            self.running = None

    async def post(self, body: bytes, content_type: str, **kw: Any) -> tuple[int, str]:
        return await post_signed(
            self.http, f"{self.url}/slack/events", body, SIGNING_SECRET, content_type=content_type, **kw
        )

    async def event(self, event: dict[str, Any], **kw: Any) -> tuple[int, str]:
        retry_num = kw.pop("retry_num", None)
        timestamp = kw.pop("timestamp", None)
        return await self.post(
            event_body(event, **kw), "application/json", retry_num=retry_num, timestamp=timestamp
        )

    async def command(self, command: str, text: str, **kw: Any) -> tuple[int, str]:
        return await self.post(command_body(command, text, **kw), "application/x-www-form-urlencoded")

    async def action(self, action: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.post(block_actions_body(action, **kw), "application/x-www-form-urlencoded")

    async def idle(self, timeout: float = 60.0) -> None:
        """Wait until every job recorded before an ack, and every task started after one, has
        finished (twice in a row: a finishing task may record another job). The timeout only
        bounds a hang: on a loaded machine an answer that takes 0.2 s alone can take seconds."""
        quiet = 0
        async with asyncio.timeout(timeout):
            while quiet < 2:
                quiet = quiet + 1 if await self._quiet() else 0
                await asyncio.sleep(0.01)

    async def _quiet(self) -> bool:
        """No task, nothing claimable, and no job this process holds: a claim commits before the
        engine counts its job as running, and a job leaves that count before its end is written,
        so the engine alone can look idle for a moment while a job is still held here."""
        if len(self.rt.tasks) or not await self.rt.work.settled():
            return False
        jobs = self.rt.db.jobs.table
        held = select(jobs.c.id).where(jobs.c.state == "running", jobs.c.owner == self.rt.work.owner)
        try:
            async with self.rt.db.reading() as conn:  # no transaction: tests count them
                return (await conn.execute(held.limit(1))).first() is None
        except Exception:  # the database is down (tests of that): as settled() says, nothing runs
            return True

    async def close(self) -> None:
        await self.stop()
        await self.http.close()


_THE_TESTS_LLM: Any = object()


class MakeBot(Protocol):
    async def __call__(
        self,
        *,
        llm: FakeOpenAI | None = ...,
        weather: FakeOpenMeteo | None = None,
        db_url: str | None = None,
        scheduler: dict[str, Any] | None = None,
        **env: str,
    ) -> Bot: ...


@pytest.fixture
async def make_bot(
    slack: FakeSlack, llm: FakeOpenAI, db_url: str, migrated_sqlite: Path
) -> AsyncIterator[MakeBot]:
    """The one way tests start a bot: on this test's fake Slack, fake model and database, with
    settings (env names) over make_settings' defaults. `llm=None` runs without a model (or pass
    another fake server), `weather=` points the weather tools at the fake Open-Meteo, `scheduler=`
    are the clock's options (e.g. retry_delay=0). An SQLite database starts as a copy of the
    migrated one (the bot would migrate it: same schema, less CPU). Every bot it started is
    closed after the test."""
    started: list[Bot] = []

    async def start(
        *,
        llm: FakeOpenAI | None = _THE_TESTS_LLM,
        weather: FakeOpenMeteo | None = None,
        db_url: str | None = None,
        scheduler: dict[str, Any] | None = None,
        **env: str,
    ) -> Bot:
        if weather is not None:
            env = {"OPEN_METEO_URL": weather.url, "OPEN_METEO_GEOCODING_URL": weather.url, **env}
        model = the_llm if llm is _THE_TESTS_LLM else llm
        premigrated(db_url or the_db, migrated_sqlite)
        harness = Bot(make_settings(slack, model, db_url or the_db, **env), **(scheduler or {}))
        started.append(harness)
        return await harness.start()

    the_llm, the_db = llm, db_url
    yield start
    for harness in reversed(started):
        await harness.close()


@pytest.fixture
async def bot(make_bot: MakeBot) -> Bot:
    return await make_bot()


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
