"""DbTrace writes behind the run: nothing per step on the run's path, nothing lost once flushed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.db import trace as trace_module
from bot.db.trace import DbTrace
from tests import queries


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.create_schema()
    yield database
    await database.close()


async def test_steps_wait_in_memory_until_flushed_then_land_in_order(db: Database) -> None:
    run = await db.runs.start("mention")
    assert run.id is not None
    trace = DbTrace(db, run.id)
    await trace.step("model", "gpt", prompt_tokens=10, completion_tokens=2, duration_ms=5.0)
    await trace.step("tool", "get_weather", arguments='{"location": "Karachi"}' + " " * 5000, output_chars=40)
    assert await queries.steps(db, run.id) == []  # no write on the run's path
    await trace.flush()
    rows = await queries.steps(db, run.id)
    assert [(s.kind, s.name, s.prompt_tokens, s.output_chars) for s in rows] == [
        ("model", "gpt", 10, 0),
        ("tool", "get_weather", 0, 40),
    ]
    assert len(rows[1].arguments or "") == trace_module.MAX_ARGUMENT_CHARS
    assert rows[0].created_at <= rows[1].created_at


async def test_a_long_run_writes_behind_without_a_flush(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(trace_module, "WRITE_AFTER", 0.05)
    run = await db.runs.start("digest")
    assert run.id is not None
    trace = DbTrace(db, run.id)
    await trace.step("model", "gpt")
    async with asyncio.timeout(5):
        while not await queries.steps(db, run.id):
            await asyncio.sleep(0.02)
    await trace.step("tool", "summarize")
    await trace.flush()
    assert [s.name for s in await queries.steps(db, run.id)] == ["gpt", "summarize"]


async def test_a_failed_write_raises_at_the_flush_and_keeps_the_steps(db: Database) -> None:
    trace = DbTrace(db, run_id=999_999)  # no such run: the foreign key refuses the rows
    await trace.step("tool", "get_weather")
    with pytest.raises(IntegrityError):
        await trace.flush()
    assert [row["name"] for row in trace.take()] == ["get_weather"]
