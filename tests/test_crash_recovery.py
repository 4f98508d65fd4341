"""Issue 11, item 1: after kill -9 of a bot process, every accepted message and slash command
is answered exactly once, by a restarted or a surviving process.

Real `python -m bot` processes are SIGKILLed while the model is answering (the fake model
server, in this test process, holds the reply); the fakes keep what Slack saw across the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import select

from bot.db import Database
from bot.db.models import Job, Message, Run
from bot.slack.output.render import answer_tag_of
from tests.bot_process import BotProcess, bot_env
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import command_body, dm, event_body, mention

LEASE = "1.5"  # WORK_LEASE_SECONDS for these processes: a dead one's work is redone after it
PATIENCE = 120.0  # bounds a hang only: a restart and a redo take ~3 s alone, far longer under load


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
            every = (await s.exec(select(Job).order_by(Job.id))).all()
            turns = [j.state for j in every if j.kind in ("turn", "event")]  # a delivery answers in its job
            runs = [r.status for r in (await s.exec(select(Run).order_by(Run.id))).all()]
            jobs = [j.state for j in every if j.kind == "command"]
        return turns, runs, jobs
    finally:
        await db.close()


def said(slack, event: dict[str, Any]) -> dict[str, Any]:
    """The user's message as Slack stores it before it sends the event; returns the event."""
    slack.add_message(event["channel"], event["user"], event["text"], event["ts"], event.get("thread_ts"))
    return event


def kill_once_when(slack, process: BotProcess, applied) -> asyncio.Event:
    """SIGKILL `process` right after Slack carries out the first call for which `applied(method,
    params)` is true, before the bot hears Slack's answer; the event is set once it is dead."""
    killed = asyncio.Event()

    def hook(method: str, params: dict[str, Any]) -> None:
        if not killed.is_set() and applied(method, params):
            assert process.proc is not None
            os.kill(process.proc.pid, signal.SIGKILL)
            killed.set()

    slack.after_applied.append(hook)
    return killed


async def restarted(env: dict[str, str], tmp_path: Path, settled: Callable[[], Awaitable[Any]]) -> BotProcess:
    """Start a fresh process, wait for `settled()` and a second more (anything doubled would have
    arrived by then), stop it; returns it, for its log."""
    process = await BotProcess(env, tmp_path, "serve").start()
    try:
        await settled()
        await asyncio.sleep(1.0)
    finally:
        await process.stop()
    return process


async def _wait_for_states(
    db_url: str, expected: list[str], which: int = 0, timeout: float = PATIENCE
) -> None:
    """Until states(db_url)[which] (0 turns, 1 runs, 2 command jobs) is `expected`."""
    async with asyncio.timeout(timeout):
        while (await states(db_url))[which] != expected:
            await asyncio.sleep(0.2)


def texts(slack, channel: str) -> list[str]:
    return [str(m.get("text", "")) for m in slack.posted(channel=channel)]


async def test_a_mention_whose_process_is_killed_is_answered_once_after_restart(
    slack, llm, db_url, tmp_path
) -> None:
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    async with aiohttp.ClientSession() as http:
        assert (
            await first.event(http, event_body(said(slack, mention("<@UBOT> hello there", ts="1.1")))) == 200
        )
        await llm.wait_for_requests(1, timeout=60)
        # An answer's run is written at its end, or once it has run RUN_ON_FILE_AFTER seconds.
        await _wait_for_states(db_url, ["running"], which=1)
        await first.kill()
        second = await restarted(
            env,
            tmp_path,
            lambda: slack.wait_for(
                lambda: "answer to there" in texts(slack, "C1"), PATIENCE, "the redone answer"
            ),
        )

    assert texts(slack, "C1") == ["answer to there"]  # the dead attempt's placeholder became it
    turns, runs, _ = await states(db_url)
    assert turns == ["done"]
    assert runs == ["interrupted", "ok"]  # the dead attempt's run is not left `running`
    assert "Traceback" not in second.log


async def test_slacks_retry_after_the_crash_is_answered_not_dropped(slack, llm, db_url, tmp_path) -> None:
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    body = event_body(said(slack, dm("what about retries", ts="2.1")), event_id="Ev-retry")
    async with aiohttp.ClientSession() as http:
        assert await first.event(http, body) == 200
        await llm.wait_for_requests(1, timeout=60)
        await first.kill()
        # A second process (say, behind the same load balancer) gets Slack's retry.
        second = await BotProcess(env, tmp_path, "serve").start()
        try:
            assert await second.event(http, body, retry_num=1) == 200
            assert await second.event(http, body, retry_num=2) == 200
            await slack.wait_for(lambda: "answer to retries" in texts(slack, "D1"), PATIENCE, "the answer")
            await asyncio.sleep(1.0)
        finally:
            await second.stop()
    assert texts(slack, "D1") == ["answer to retries"]
    assert len(llm.requests) == 2  # the killed attempt and the redo; the retries asked nothing


async def test_a_survivor_takes_over_the_turns_of_a_killed_process(slack, llm, db_url, tmp_path) -> None:
    """Two web processes on one database; one is killed with a conversation in flight."""
    slow_then_fast(llm)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    doomed = await BotProcess(env, tmp_path, "serve").start()
    survivor = await BotProcess(env, tmp_path, "serve").start()
    async with aiohttp.ClientSession() as http:
        try:
            assert await doomed.event(http, event_body(said(slack, mention("<@UBOT> one", ts="3.1")))) == 200
            await llm.wait_for_requests(1, timeout=60)
            # The next message in the same thread reaches the survivor while the doomed one answers.
            follow = said(slack, mention("<@UBOT> two", ts="3.2", thread_ts="3.1"))
            assert await survivor.event(http, event_body(follow)) == 200
            await doomed.kill()
            await slack.wait_for(lambda: len(texts(slack, "C1")) >= 2, PATIENCE, "both answers")
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
        await llm.wait_for_requests(1, timeout=60)
        await _wait_for_states(db_url, ["running"], which=1)  # its run is written beside the model call
        await first.kill()
        await restarted(
            env,
            tmp_path,
            lambda: slack.wait_for(
                lambda: any("answer to lease" in t for t in texts(slack, "C1")),
                PATIENCE,
                "the command's answer",
            ),
        )
    assert len(texts(slack, "C1")) == 1 and "answer to lease" in texts(slack, "C1")[0]
    assert len(slack.responses) == 0  # "Working on it…" was the ack; nothing else said twice
    _, runs, jobs = await states(db_url)
    assert jobs == ["done"]
    assert runs == ["interrupted", "ok"]  # the killed attempt's run is not left `running`


async def test_a_process_killed_just_after_showing_the_answer_does_not_answer_again(
    slack, llm, db_url, tmp_path
) -> None:
    """Slack applied the final edit; the process died before it could mark the turn done."""
    llm.default = Reply(content="the only answer")
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    killed = kill_once_when(slack, first, lambda m, p: m == "chat.update" and answer_tag_of(p)[1])
    async with aiohttp.ClientSession() as http:
        assert await first.event(http, event_body(said(slack, mention("<@UBOT> once", ts="5.1")))) == 200
        await asyncio.wait_for(killed.wait(), PATIENCE)
        await first.kill()
        second = await restarted(env, tmp_path, lambda: _wait_for_states(db_url, ["done"]))
    assert texts(slack, "C1") == ["the only answer"]
    assert len(llm.requests) == 1  # the answer was shown: the model is not asked again
    db = Database(db_url)
    try:  # the history holds what the user saw, for the thread's next question
        async with db.session() as s:
            stored = [(m.role, m.content) for m in (await s.exec(select(Message).order_by(Message.id))).all()]
    finally:
        await db.close()
    assert stored[-1] == ("assistant", "the only answer") and [r for r, _ in stored].count("assistant") == 1
    assert "Traceback" not in second.log


async def test_a_long_answer_cut_short_by_a_kill_is_shown_whole_once(slack, llm, db_url, tmp_path) -> None:
    """Killed after the second of three parts was posted: the redo keeps one placeholder, drops
    the orphaned part and posts the three parts once."""
    paragraphs = [f"Paragraph {i}. " + "word " * 2_000 for i in range(3)]  # ~10 kB each
    llm.default = Reply(content="\n\n".join(paragraphs))
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    killed = kill_once_when(
        slack,
        first,
        lambda m, p: (
            m == "chat.postMessage"
            and answer_tag_of(p)[0] is not None
            and not answer_tag_of(p)[1]
            and str(p.get("text")).startswith("Paragraph 1.")
        ),
    )
    async with aiohttp.ClientSession() as http:
        assert await first.event(http, event_body(said(slack, mention("<@UBOT> long", ts="6.1")))) == 200
        await asyncio.wait_for(killed.wait(), PATIENCE)
        await first.kill()
        assert len(slack.posted(channel="C1")) == 2  # part 0 (the placeholder) and part 1
        second = await restarted(env, tmp_path, lambda: _wait_for_states(db_url, ["done"]))
    shown = texts(slack, "C1")
    assert len(shown) == 3 and [p.split(".")[0] for p in shown] == [
        "Paragraph 0",
        "Paragraph 1",
        "Paragraph 2",
    ]
    assert len(llm.requests) == 2
    assert "Traceback" not in second.log


async def test_a_command_killed_after_posting_its_result_does_not_post_it_again(
    slack, llm, db_url, tmp_path
) -> None:
    llm.default = Reply(content="the result")
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE)
    first = await BotProcess(env, tmp_path, "serve").start()
    killed = kill_once_when(slack, first, lambda m, p: m == "chat.postMessage" and answer_tag_of(p)[1])
    body = command_body("/ask", "what is once", response_url=slack.response_url("ask"))
    async with aiohttp.ClientSession() as http:
        assert await first.command(http, body) == 200
        await asyncio.wait_for(killed.wait(), PATIENCE)
        await first.kill()
        second = await restarted(env, tmp_path, lambda: _wait_for_states(db_url, ["done"], which=2))
    assert [t for t in texts(slack, "C1") if "the result" in t] == ["> what is once the result"]
    assert len(llm.requests) == 1 and len(slack.responses) == 0
    assert "Traceback" not in second.log


async def test_a_native_stream_cut_by_a_kill_is_replaced_by_one_answer(slack, llm, db_url, tmp_path) -> None:
    """An assistant thread streams its answer; a stream carries no metadata until it stops, so
    its ts is recorded with the turn and the redo stops and deletes it."""
    llm.default = Reply(content="one streamed answer, word by word", stream_delay=0.3)
    env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE, STREAM_UPDATE_SECONDS="0.2")
    first = await BotProcess(env, tmp_path, "serve").start()
    killed = kill_once_when(slack, first, lambda m, p: m == "chat.appendStream")
    slack.add_message("D1", "U1", "the assistant thread", "8.1")
    async with aiohttp.ClientSession() as http:
        event = said(slack, dm("stream it", ts="8.2", thread_ts="8.1"))
        assert await first.event(http, event_body(event)) == 200
        await asyncio.wait_for(killed.wait(), PATIENCE)
        await first.kill()
        assert len(slack.posted(channel="D1")) == 1  # the half-streamed message
        second = await restarted(env, tmp_path, lambda: _wait_for_states(db_url, ["done"]))
    assert texts(slack, "D1") == ["one streamed answer, word by word"]
    assert not slack.posted(channel="D1")[0].get("streaming")
    assert "Traceback" not in second.log
