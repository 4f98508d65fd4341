"""Issue 10, finding 6: one turn at a time per conversation, in arrival order, across processes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select, update

from bot.db import Database
from bot.db.models import Job
from bot.db.queue.jobs import NewJob
from bot.slack.answering.conversation import GAVE_UP, Turn
from bot.slack.answering.turns import answer_tag, conversation_queue
from bot.slack.output.render import answer_metadata
from bot.work import MAX_ATTEMPTS
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import dm, mention, thread_message
from tests.postgres import fresh_database, throwaway_postgres


def answering_each_message(llm) -> None:
    """The model takes 0.4 s and answers the newest user message it was shown."""

    def respond(body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]
        assert last["role"] == "user", "each answer's history must end at its own message"
        return Reply(content=f"answer to {last['content']}", delay=0.4)

    llm.responder = respond


async def send_apart(bots: list[Bot], events: list[dict[str, Any]]) -> None:
    """Deliver events 100 ms apart, alternating between the bot processes."""
    for i, event in enumerate(events):
        assert (await bots[i % len(bots)].event(event))[0] == 200
        await asyncio.sleep(0.1)


async def settle(bots: list[Bot], llm, count: int) -> None:
    await llm.wait_for_requests(count, timeout=60)
    for b in bots:
        await b.idle()


def assert_answered_in_order(llm, posted: list[dict[str, Any]], questions: list[str]) -> None:
    assert [p["text"] for p in posted] == [f"answer to {q}" for q in questions]
    assert len(llm.requests) == len(questions)  # nothing answered twice, nothing skipped
    assert llm.max_in_flight == 1  # one turn at a time
    for i, request in enumerate(llm.requests):
        seen = [m["content"] for m in request["messages"] if m["role"] in ("user", "assistant")]
        expected: list[str] = []
        for q in questions[: i + 1]:
            expected += [q, f"answer to {q}"]
        assert seen == expected[:-1], f"turn {i + 1} saw an interleaved history"


@pytest.mark.parametrize("count", [2, 5])
async def test_messages_in_one_thread_are_answered_once_in_order(bot: Bot, slack, llm, count) -> None:
    answering_each_message(llm)
    root = "1700000100.000100"
    questions = [f"q{i}" for i in range(1, count + 1)]
    events = [mention(f"<@UBOT> {questions[0]}", ts=root)] + [
        thread_message(q, ts=f"1700000100.{i + 2:06d}", thread_ts=root) for i, q in enumerate(questions[1:])
    ]
    await send_apart([bot], events)
    await settle([bot], llm, count)
    assert_answered_in_order(llm, slack.posted(channel="C1", thread_ts=root), questions)


@pytest.mark.parametrize("count", [2, 5])
async def test_messages_in_one_dm_are_answered_once_in_order(bot: Bot, slack, llm, count) -> None:
    answering_each_message(llm)
    questions = [f"d{i}" for i in range(1, count + 1)]
    events = [dm(q, ts=f"1700000200.{i + 1:06d}") for i, q in enumerate(questions)]
    await send_apart([bot], events)
    await settle([bot], llm, count)
    assert_answered_in_order(llm, slack.posted(channel="D1"), questions)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def shared_db(request, db_url) -> str:
    if request.param == "sqlite":
        return db_url
    return await fresh_database(request.getfixturevalue("postgres_server"))


async def test_two_processes_on_one_database_take_turns(make_bot: MakeBot, slack, llm, shared_db) -> None:
    """Messages of one DM delivered alternately to two bot processes: still one at a time, in order."""
    db_url = shared_db
    answering_each_message(llm)
    bots = [await make_bot(db_url=db_url), await make_bot(db_url=db_url)]
    try:
        questions = [f"p{i}" for i in range(1, 6)]
        await send_apart(bots, [dm(q, ts=f"1700000300.{i + 1:06d}") for i, q in enumerate(questions)])
        await settle(bots, llm, len(questions))
        assert_answered_in_order(llm, slack.posted(channel="D1"), questions)
    finally:
        for b in bots:
            await b.close()


async def test_messages_still_queued_at_shutdown_are_answered_after_restart(bot: Bot, slack, llm) -> None:
    """A graceful stop hands unfinished turns over: the restarted process answers the cut-off
    one in its own placeholder (nobody is told to ask again) and then the one still waiting."""
    llm.default = Reply(content="slow", delay=2.0)
    await send_apart([bot], [dm("first", ts="1700000400.000001"), dm("second", ts="1700000400.000002")])
    await llm.wait_for_requests(1)
    assert bot.running is not None
    await bot.running.stop(drain=0.2)  # the process stops: "first" is cut off, "second" still waits
    bot.running = None
    answering_each_message(llm)
    await bot.start()
    await bot.idle()
    texts = [p["text"] for p in slack.posted(channel="D1")]
    assert texts == ["answer to first", "answer to second"]
    assert not any("restarted" in t or "Thinking" in t for t in texts)
    last = llm.requests[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["first", "second"]


async def test_messages_queued_long_before_a_restart_are_not_answered_stale(bot: Bot, slack, llm) -> None:
    llm.default = Reply(content="slow", delay=2.0)
    await send_apart([bot], [dm("first", ts="1700000450.000001"), dm("second", ts="1700000450.000002")])
    await llm.wait_for_requests(1)
    assert bot.running is not None
    await bot.running.stop(drain=0.2)
    bot.running = None
    store = Database(bot.settings.database_url)  # the process was down for an hour
    async with store.session() as s:
        await s.exec(update(Job).values(created_at=datetime.now(UTC) - timedelta(hours=1)))
        await s.commit()
    await store.close()
    await bot.start()
    await bot.idle()
    assert len(llm.requests) == 1  # "second" was not answered an hour late
    async with bot.rt.db.session() as s:
        states = [t.state for t in (await s.exec(select(Job).order_by(Job.id))).all()]
    assert states == ["interrupted", "interrupted"]
    # "first" had shown a placeholder: it now says what happened instead of "Thinking…" forever.
    assert [p["text"] for p in slack.posted(channel="D1")] == [GAVE_UP]


def test_a_queued_turn_comes_back_equal() -> None:
    import dataclasses
    import json

    from bot.slack.answering.conversation import Turn
    from bot.slack.answering.turns import turn_from_json

    turn = Turn("T1", "D1", "U1", "hi", "1.2", "main", None, "dm", files=({"id": "F1", "name": "a.txt"},))
    assert turn_from_json(dataclasses.asdict(turn)) == turn
    assert turn_from_json(json.dumps(dataclasses.asdict(turn))) == turn


async def test_a_turn_whose_process_died_every_time_is_given_up_with_an_apology(bot: Bot, slack, llm) -> None:
    """A message that kills its process on every attempt (say, it runs the host out of memory)
    must not crash-loop the bot: after MAX_ATTEMPTS its placeholder becomes an apology."""
    rt = bot.rt
    slack.add_message("C1", "U1", "<@UBOT> poison", "1700000900.000100")
    turn = Turn(
        "T1",
        "C1",
        "U1",
        "<@UBOT> poison",
        "1700000900.000100",
        "1700000900.000100",
        "1700000900.000100",
        "mention",
    )
    await rt.work.stop(drain=1)  # recorded while no process claims work
    [(queued, _)] = await rt.db.jobs.add(
        [
            NewJob(
                "turn",
                f"turn:T1:C1:{turn.ts}",
                dataclasses.asdict(turn),
                conversation_queue("T1", "C1", turn.thread_ts),
                "T1:U1",
            )
        ]
    )
    # Its last attempt showed a placeholder, then its process died holding the turn.
    await rt.slack.chat_postMessage(
        channel="C1",
        thread_ts=turn.ts,
        text="_Thinking…_",
        metadata=answer_metadata(answer_tag(queued), False),
    )
    async with rt.db.session() as s:
        await s.exec(
            update(Job).values(state="running", attempts=MAX_ATTEMPTS, owner="dead", lease_expires=0)
        )
        await s.commit()
    await rt.work.start()
    await bot.idle()
    assert [m["text"] for m in slack.posted(channel="C1")] == [GAVE_UP]  # the placeholder, replaced
    assert llm.requests == []
    assert (await rt.db.jobs.states([queued]))[queued] == "interrupted"
