"""Issue 11, item 1: after kill -9 of a bot process, every accepted message and slash command
is answered exactly once, by a restarted or a surviving process.

Real `python -m bot` processes are SIGKILLed while the model is answering (the fake model
server, in this test process, holds the reply); the fakes keep what Slack saw across the kill.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from bot.db import Database
from bot.db.models import CommandJob, QueuedTurn, Run
from tests.bot_process import BotProcess, bot_env
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import command_body, dm, event_body, mention

LEASE = "1.5"  # WORK_LEASE_SECONDS for these processes: a dead one's work is redone after it


def slow_then_fast(llm, first_delay: float = 30.0) -> None:
    """The first request hangs (the process is killed meanwhile); later ones answer at once."""
    seen = {"n": 0}

    def respond(body: dict[str, Any]) -> Reply:
        seen["n"] += 1
        question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        delay = first_delay if seen["n"] == 1 else 0.0
        return Reply(content=f"answer to {question.split()[-1]}", delay=delay)

    llm.responder = respond


async def states(db_url: str) -> tuple[list[str], list[str], list[str]]:
    """(queued turn states, run statuses, command job states) as a fresh process sees them."""
    db = Database(db_url)
    try:
        async with db.session() as s:
            turns = [t.state for t in (await s.exec(select(QueuedTurn).order_by(QueuedTurn.id))).all()]
            runs = [r.status for r in (await s.exec(select(Run).order_by(Run.id))).all()]
            jobs = [j.state for j in (await s.exec(select(CommandJob).order_by(CommandJob.id))).all()]
        return turns, runs, jobs
    finally:
        await db.close()


def texts(slack, channel: str) -> list[str]:
    return [str(m.get("text", "")) for m in slack.posted(channel=channel)]


@pytest.mark.xfail(
    strict=True,
    reason="the dead attempt's placeholder is not adopted yet (AnswerSurface.resume is a stub)",
)
async def test_a_mention_whose_process_is_killed_is_answered_once_after_restart(
    slack, llm, db_url, tmp_path
) -> None:
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    async with aiohttp.ClientSession() as http:
        assert await first.event(http, event_body(mention("<@UBOT> hello there", ts="1.1"))) == 200
        await llm.wait_for_requests(1, timeout=20)
        await first.kill()
        second = await BotProcess(env, tmp_path, "serve").start()
        try:
            await slack.wait_for(lambda: "answer to there" in texts(slack, "C1"), 20, "the redone answer")
            await asyncio.sleep(1.0)  # anything doubled would have arrived by now
        finally:
            await second.stop()
    assert texts(slack, "C1") == ["answer to there"]  # the dead attempt's placeholder became it
    turns, runs, _ = await states(db_url)
    assert turns == ["done"]
    assert runs == ["interrupted", "ok"]  # the dead attempt's run is not left `running`
    assert "Traceback" not in second.log


@pytest.mark.xfail(
    strict=True,
    reason="the dead attempt's placeholder is not adopted yet (AnswerSurface.resume is a stub)",
)
async def test_slacks_retry_after_the_crash_is_answered_not_dropped(slack, llm, db_url, tmp_path) -> None:
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    body = event_body(dm("what about retries", ts="2.1"), event_id="Ev-retry")
    async with aiohttp.ClientSession() as http:
        assert await first.event(http, body) == 200
        await llm.wait_for_requests(1, timeout=20)
        await first.kill()
        # A second process (say, behind the same load balancer) gets Slack's retry.
        second = await BotProcess(env, tmp_path, "serve").start()
        try:
            assert await second.event(http, body, retry_num=1) == 200
            assert await second.event(http, body, retry_num=2) == 200
            await slack.wait_for(lambda: "answer to retries" in texts(slack, "D1"), 20, "the answer")
            await asyncio.sleep(1.0)
        finally:
            await second.stop()
    assert texts(slack, "D1") == ["answer to retries"]
    assert len(llm.requests) == 2  # the killed attempt and the redo; the retries asked nothing


@pytest.mark.xfail(
    strict=True,
    reason="the dead attempt's placeholder is not adopted yet (AnswerSurface.resume is a stub)",
)
async def test_a_survivor_takes_over_the_turns_of_a_killed_process(slack, llm, db_url, tmp_path) -> None:
    """Two web processes on one database; one is killed with a conversation in flight."""
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    doomed = await BotProcess(env, tmp_path, "serve").start()
    survivor = await BotProcess(env, tmp_path, "serve").start()
    async with aiohttp.ClientSession() as http:
        try:
            assert await doomed.event(http, event_body(mention("<@UBOT> one", ts="3.1"))) == 200
            await llm.wait_for_requests(1, timeout=20)
            # The next message in the same thread reaches the survivor while the doomed one answers.
            follow = mention("<@UBOT> two", ts="3.2", thread_ts="3.1")
            assert await survivor.event(http, event_body(follow)) == 200
            await doomed.kill()
            await slack.wait_for(lambda: len(texts(slack, "C1")) >= 2, 20, "both answers")
            await asyncio.sleep(1.0)
        finally:
            await survivor.stop()
    assert texts(slack, "C1") == ["answer to one", "answer to two"]  # in order, once each
    turns, _, _ = await states(db_url)
    assert turns == ["done", "done"]


async def test_a_slash_command_whose_process_is_killed_is_finished_once(slack, llm, db_url, tmp_path) -> None:
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    body = command_body("/ask", "what is a lease", response_url=slack.response_url("ask"))
    async with aiohttp.ClientSession() as http:
        assert await first.command(http, body) == 200
        await llm.wait_for_requests(1, timeout=20)
        await first.kill()
        second = await BotProcess(env, tmp_path, "serve").start()
        try:
            await slack.wait_for(
                lambda: any("answer to lease" in t for t in texts(slack, "C1")), 20, "the command's answer"
            )
            await asyncio.sleep(1.0)
        finally:
            await second.stop()
    assert len(texts(slack, "C1")) == 1 and "answer to lease" in texts(slack, "C1")[0]
    assert len(slack.responses) == 0  # "Working on it…" was the ack; nothing else said twice
    _, _, jobs = await states(db_url)
    assert jobs == ["done"]
