"""DbTrace writes behind the run: nothing per step on the run's path, nothing lost once flushed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing

import pytest
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.db.queries import trace as trace_module
from bot.db.queries.trace import DbTrace
from tests import queries
from tests.conftest import MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention


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
    async with asyncio.timeout(60):  # bounds a hang: written 0.05 s after the step
        while not await queries.steps(db, run.id):
            await asyncio.sleep(0.02)
    await trace.step("tool", "summarize")
    await trace.flush()
    assert [s.name for s in await queries.steps(db, run.id)] == ["gpt", "summarize"]


async def test_a_failed_write_raises_at_the_flush_and_keeps_the_steps(db: Database) -> None:
    trace = DbTrace(db, 999_999)  # no such run: the foreign key refuses the rows
    await trace.step("tool", "get_weather")
    with pytest.raises(IntegrityError):
        await trace.flush()
    assert [row["name"] for row in trace.take()] == ["get_weather"]


async def test_an_answers_trace_is_written_with_its_end(
    make_bot: MakeBot, slack, llm, db_url, weather
) -> None:
    """A quick answer's run, steps and messages are written once, together with its job's
    finish, after the answer is shown: whoever reads the database sees all of them or none."""
    if not db_url.startswith("sqlite"):
        pytest.skip("reads the SQLite file directly, as a second reader (the Postgres pass runs the rest)")
    harness = await make_bot(weather=weather)
    path = db_url.split(":///", 1)[1]
    seen: list[tuple[int, int, int, str]] = []
    stop = asyncio.Event()

    def look() -> None:
        with closing(sqlite3.connect(path)) as conn:  # another reader, as an operator would be
            (steps,) = conn.execute("SELECT count(*) FROM step").fetchone()
            (runs,) = conn.execute("SELECT count(*) FROM run").fetchone()
            (messages,) = conn.execute("SELECT count(*) FROM message").fetchone()
            found = conn.execute("SELECT state FROM job WHERE kind = 'event'").fetchone()
        seen.append((steps, runs, messages, found[0] if found else ""))

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.to_thread(look)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"location": "Karachi"})]),
            Reply(content="Sunny in Karachi all day."),
        )
        await harness.event(mention("<@UBOT> weather in Karachi?", ts="50.1"))
        await harness.idle()
    finally:
        stop.set()
        await watcher
        await harness.close()
    look()
    # model, get_weather with its geocode and get_forecast, model; the question and the reply's
    # three messages (the call, its result, the answer)
    assert seen[-1] == (5, 1, 4, "done")
    finished = [s for s in seen if s[3] == "done"]
    assert all(s == (5, 1, 4, "done") for s in finished)  # never the job's end without the rest
    assert all(s[2] == 0 for s in seen if s[3] != "done")  # nor the messages before it


async def test_a_run_written_below_sqlalchemy_reads_back_the_same(db: Database) -> None:
    """On SQLite, runs and steps skip SQLAlchemy for speed; what the ORM reads must not differ."""
    run = await db.runs.start("mention", team_id="T1", channel_id="C1", user_id="U1", model="m" * 300)
    assert run.id is not None
    await db.runs.finish(
        run.id,
        "ok",
        started_at=run.started_at,
        model=run.model,
        trigger="mention",
        steps=[{"kind": "tool", "name": "get_weather", "output_chars": 3}],
        prompt_tokens=12,
        answer_ts="1.1",
    )
    stored = await queries.run(db, run.id)
    assert stored is not None
    assert (stored.status, stored.trigger, stored.prompt_tokens, stored.answer_ts) == (
        "ok",
        "mention",
        12,
        "1.1",
    )
    assert stored.model is not None and len(stored.model) == 100  # cut to its column
    assert stored.started_at.replace(tzinfo=None) == run.started_at.replace(tzinfo=None)
    assert stored.finished_at is not None and stored.finished_at >= stored.started_at
    assert stored.duration_ms is not None and stored.duration_ms >= 0
    (step,) = await queries.steps(db, run.id)
    assert (step.kind, step.name, step.output_chars) == ("tool", "get_weather", 3)
