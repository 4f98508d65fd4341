"""traced_run: the one place a run starts, fails (one policy for all three doors) and finishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from bot.runtime import Runtime, create_runtime
from bot.work.traced_run import RunFailed, traced_run
from orchestrators.agent.loop import AgentError
from tests import queries
from tests.conftest import make_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tools.toolkit.registry import ToolError


@pytest.fixture
async def rt(slack: FakeSlack, llm: FakeOpenAI, db_url: str) -> AsyncIterator[Runtime]:
    """A runtime without a server (not make_bot): these tests call its parts directly."""
    runtime = await create_runtime(make_settings(slack, llm, db_url))
    yield runtime
    await runtime.close()


WHERE = {"team": "T1", "channel": "C1", "user": "U1"}


async def test_a_finished_run_records_its_outcome_usage_and_steps(rt: Runtime) -> None:
    statuses: list[str] = []

    async def on_status(text: str) -> None:
        statuses.append(text)

    async with traced_run(rt, "mention", **WHERE, thread_ts="1.0", on_status=on_status) as run:
        run.ctx.usage.add(SimpleNamespace(prompt_tokens=120, completion_tokens=30))
        await run.ctx.trace.step("tool", "get_weather", arguments='{"location": "Karachi"}', output_chars=9)
        await run.ctx.trace.status("Checking the weather…")
        run.finish("limited", error="8 tool steps", answer_ts="2.0")
    row = await queries.run(rt.db, run.id)
    assert row is not None and row.status == "limited" and row.error == "8 tool steps"
    assert (row.answer_ts, row.thread_ts, row.model) == ("2.0", "1.0", rt.settings.openai_model)
    assert (row.prompt_tokens, row.completion_tokens, row.llm_calls) == (120, 30, 1)
    assert row.finished_at is not None and row.duration_ms is not None
    assert [(s.kind, s.name, s.output_chars) for s in await queries.steps(rt.db, run.id)] == [
        ("tool", "get_weather", 9)
    ]
    assert statuses == ["Checking the weather…"] and run.id not in rt.db.runs.started


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ToolError("No place called 'Atlantis' found"), "No place called 'Atlantis' found"),
        (AgentError("model call timed out after 60 s"), "model call timed out after 60 s"),
    ],
)
async def test_an_expected_failure_keeps_its_wording(rt: Runtime, error: Exception, reason: str) -> None:
    with pytest.raises(RunFailed) as raised:
        async with traced_run(rt, "/weather", **WHERE) as run:
            run.ctx.usage.add(SimpleNamespace(prompt_tokens=5, completion_tokens=1))
            raise error
    assert raised.value.expected and raised.value.reason == reason and raised.value.__cause__ is error
    row = await queries.run(rt.db, raised.value.run_id)
    assert row is not None and (row.status, row.error, row.llm_calls) == ("failed", reason, 1)


async def test_slack_refusals_are_expected_and_say_what_slack_said(rt: Runtime) -> None:
    with pytest.raises(RunFailed) as raised:
        async with traced_run(rt, "digest", **WHERE):
            await rt.slack.conversations_info(channel="CMISSING")  # the fake answers channel_not_found
    assert raised.value.expected and raised.value.reason == "Slack said channel_not_found"


async def test_a_bug_is_not_shown_as_it_is_but_recorded_with_its_type(rt: Runtime) -> None:
    with pytest.raises(RunFailed) as raised:
        async with traced_run(rt, "/ask", **WHERE):
            {}["missing"]
    assert not raised.value.expected and raised.value.reason == "KeyError: 'missing'"
    row = await queries.run(rt.db, raised.value.run_id)
    assert row is not None and row.status == "failed" and row.error == "KeyError: 'missing'"


async def test_cancellation_marks_the_run_interrupted_and_propagates(rt: Runtime) -> None:
    entered = asyncio.Event()
    ids: list[int] = []

    async def work() -> None:
        async with traced_run(rt, "/research", **WHERE) as run:
            ids.append(await run.ready())
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await queries.run(rt.db, ids[0])
    assert row is not None and (row.status, row.error) == ("interrupted", "interrupted by shutdown")
