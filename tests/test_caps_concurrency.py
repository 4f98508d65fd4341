"""Issue 23, item 5: daily token caps and schedule caps hold under 50 concurrent requests.

Budgets are reserved atomically before the model call and settled when the run ends; schedules
are counted and inserted under one lock. Each test runs on SQLite and, with TEST_DATABASE_URL, on
Postgres; the multi-process ones start real `python -m bot serve` processes on one database.

The bound on tokens: a run may spend at most its reservation plus the model call that crosses
it (limits are checked before each call). A reservation is min(AGENT_TOKEN_BUDGET, what is left),
so while less than a run's budget is left one run holds all of it; the others wait for it to
settle, then one holds what it left. Today's total stays within the cap plus one model call
(here one answer, 400 tokens): 600 held, 400 spent; 200 held, 400 spent; then refusals.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from openai import AsyncOpenAI
from sqlalchemy import delete, update
from sqlmodel import col, select

from bot.controls.budget import allowance
from bot.db import Database
from bot.db.models import BudgetReservation, DigestSchedule, Run, utcnow
from tests import queries
from tests.bot_process import BotProcess, bot_env
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import command_body, event_body, mention
from tests.test_home_and_shortcuts import shortcut_on
from tools.summarize import complete
from tools.toolkit.context import ToolContext, Usage
from tools.toolkit.registry import ToolError

ANSWER = Reply(content="An answer.", usage=(300, 100), delay=0.05)  # 400 tokens
CAP = 600  # one and a half answers
REFUSAL = f"used your {CAP} tokens for today"
DIGEST_CAP = 10  # bot.digests.permissions.MAX_PER_CHANNEL
_ts = itertools.count(1)


def capped_env(**extra: str) -> dict[str, str]:
    # No per-person slot: every request races for the budget at once.
    return {"USER_DAILY_TOKENS": str(CAP), "USER_MAX_CONCURRENT_RUNS": "0", **extra}


async def capped_bot(make_bot: MakeBot, slack, llm, **env: str) -> Bot:
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    harness = await make_bot(**capped_env(**env))
    llm.default = ANSWER
    return harness


@pytest.fixture
async def capped(make_bot: MakeBot, slack, llm) -> Bot:
    return await capped_bot(make_bot, slack, llm)


@pytest.fixture
async def impatient(make_bot: MakeBot, slack, llm) -> Bot:
    """A run waits for holds of runs in flight at most AGENT_DEADLINE_SECONDS: 2 s here."""
    return await capped_bot(make_bot, slack, llm, AGENT_DEADLINE_SECONDS="2")


async def hold(db: Database, tokens: int, *, age: timedelta = -timedelta(hours=1)) -> None:
    """A reservation as another process's run in flight leaves it; created `age` ago (in the
    future by default: live however slow the test runs)."""
    async with db.session() as s:
        when = utcnow() - age
        s.add(BudgetReservation(team_id="T1", user_id="U1", channel_id="C1", tokens=tokens, created_at=when))
        await s.commit()


def new_ts() -> str:
    return f"{int(time.time())}.{next(_ts):06d}"


def outcome(slack, ts: str) -> str:
    """What the thread of mention `ts` shows: "answer", "refused", or "" (not finished yet)."""
    shown = json.dumps(slack.posted(channel="C1", thread_ts=ts))
    if "An answer." in shown:
        return "answer"
    return "refused" if REFUSAL in shown and "resets at 00:00 UTC" in shown else ""


async def reservations(db: Database) -> list[BudgetReservation]:
    async with db.session() as s:
        return list((await s.exec(select(BudgetReservation))).all())


async def spent(db: Database) -> int:
    return sum(r.prompt_tokens + r.completion_tokens for r in await queries.runs(db))


async def assert_within_the_cap(db: Database, slack, llm, stamps: list[str]) -> None:
    outcomes = [outcome(slack, ts) for ts in stamps]
    answered = outcomes.count("answer")
    assert outcomes.count("refused") == len(stamps) - answered, outcomes  # everyone else is told
    # The first run holds all 600; the others wait for it, then one holds the 200 left and its
    # answer crosses the cap; then the rest are refused.
    assert answered == 2 and len(llm.requests) == 2
    assert await spent(db) == 800 <= CAP + 400
    assert await reservations(db) == []  # every run settled: nothing held, nothing counted twice


async def test_50_concurrent_mentions_spend_at_most_the_cap_and_one_answer(capped: Bot, slack, llm) -> None:
    stamps = [new_ts() for _ in range(50)]
    acks = await asyncio.gather(*(capped.event(mention("<@UBOT> question", ts=ts)) for ts in stamps))
    assert {status for status, _ in acks} == {200}
    await capped.idle(timeout=120)
    await assert_within_the_cap(capped.rt.db, slack, llm, stamps)
    runs = await queries.runs(capped.rt.db)
    assert sorted(r.status for r in runs) == sorted(
        ["ok" if outcome(slack, ts) == "answer" else "refused" for ts in stamps]
    )


async def test_concurrent_asks_share_the_same_reservations(capped: Bot, slack, llm) -> None:
    url = slack.response_url("ask")
    await asyncio.gather(*(capped.command("/ask", f"question {i}?", response_url=url) for i in range(20)))
    await capped.idle(timeout=120)
    refused = [r["text"] for r in slack.responses]  # privately, to the asker
    answered = sum("An answer." in json.dumps(m) for m in slack.posted(channel="C1"))  # in the channel
    assert len(refused) == 20 - answered and all(REFUSAL in t for t in refused)
    assert answered == 2 and len(llm.requests) == 2
    assert await spent(capped.rt.db) == 800 <= CAP + 400
    assert await reservations(capped.rt.db) == []


async def test_a_crashed_runs_reservation_expires_and_a_live_one_holds(impatient: Bot, slack, llm) -> None:
    deadline = impatient.rt.settings.agent_deadline_seconds
    await hold(impatient.rt.db, CAP, age=timedelta(seconds=2 * deadline + 5))  # its process died
    first = new_ts()
    await impatient.event(mention("<@UBOT> question", ts=first))
    await impatient.idle()
    assert outcome(slack, first) == "answer"

    await hold(impatient.rt.db, 200)  # a run in flight on another process holds the rest
    second = new_ts()
    await impatient.event(mention("<@UBOT> question", ts=second))
    await impatient.idle(timeout=60)  # it waits AGENT_DEADLINE_SECONDS for the hold to go
    assert outcome(slack, second) == "refused" and len(llm.requests) == 1
    assert "400 so far, 200 more held by answers in progress" in json.dumps(
        slack.posted(channel="C1", thread_ts=second)
    )


async def test_thread_summaries_are_capped_and_refused_privately(impatient: Bot, slack, llm) -> None:
    await hold(impatient.rt.db, CAP)  # another answer in flight holds the whole allowance
    root = slack.add_message("C1", "U1", "Which database for the new service?")
    await impatient.command("/summarize", "", thread_ts=root, response_url=slack.response_url())
    await impatient.post(shortcut_on(slack, root, "U1"), "application/x-www-form-urlencoded")
    await impatient.idle(timeout=60)
    assert llm.requests == [] and slack.posted(channel="C1", thread_ts=root) == []
    (by_command,) = slack.responses
    (by_shortcut,) = slack.ephemerals
    assert REFUSAL in by_command["text"] and REFUSAL in by_shortcut["text"]
    runs = await queries.runs(impatient.rt.db)
    assert sorted((r.trigger, r.status) for r in runs) == [("/summarize", "refused"), ("shortcut", "refused")]


async def test_a_failed_run_releases_its_reservation(capped: Bot, slack, llm) -> None:
    llm.script(Reply(status=500, error_message="the model is down"))
    first, second = new_ts(), new_ts()
    await capped.event(mention("<@UBOT> question", ts=first))
    await capped.idle()
    assert "couldn't get an answer" in json.dumps(slack.posted(channel="C1", thread_ts=first))
    assert await reservations(capped.rt.db) == []
    await capped.event(mention("<@UBOT> again", ts=second))
    await capped.idle()
    assert outcome(slack, second) == "answer"


def test_allowance_counts_holds_and_waits_only_for_them() -> None:
    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert allowance(0, 1000, 0, 0, now, most=100).remaining == 100  # a run's own budget
    assert allowance(0, 1000, 0, 0, now, user_held=950, most=100).remaining == 50  # what is left
    held = allowance(400, 600, 0, 0, now, user_held=200)
    assert held.refusal and "400 so far, 200 more held" in held.refusal and held.held_up
    assert not allowance(600, 600, 0, 0, now).held_up  # finished runs used it: nothing to wait for
    assert not allowance(0, 600, 300, 300, now, user_held=600).held_up  # the channel's is used up


async def test_no_model_call_starts_past_the_runs_reservation(llm) -> None:
    """Workflows (/summarize, /research) and tools call the model without the agent's loop: the
    reservation bounds them at the model call itself."""
    async with aiohttp.ClientSession() as http:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0)
        ctx = ToolContext(http=http, llm=client, usage=Usage(limit=600))
        llm.default = ANSWER
        assert await complete(ctx, "Summarize.", "some text") == "An answer."
        assert await complete(ctx, "Summarize.", "more text") == "An answer."  # 400 < 600: allowed
        with pytest.raises(ToolError, match="used the 600 tokens it reserved under today's cap"):
            await complete(ctx, "Summarize.", "and more")
        await client.close()
    assert len(llm.requests) == 2 and ctx.usage.total_tokens == 800


async def test_a_run_ending_during_a_reservation_is_counted_once_not_neither(db_url) -> None:
    """A run's end writes its tokens and drops its hold in one transaction; a reservation racing
    it must see one or the other, never neither (on Postgres two reads are two snapshots: a run
    that ended between them once let a third answer through the cap). 300 ends raced by reads."""
    db = Database(db_url)
    if db.dialect == "sqlite":
        await db.close()
        pytest.skip("SQLite: BEGIN IMMEDIATE holds the one write lock across the reads; the end waits")
    await db.create_schema()
    day = datetime.now(UTC) - timedelta(hours=1)
    seen: list[int] = []

    def look(person, place) -> int:
        seen.append(person.used + person.held)
        return 0  # reserve nothing: only watch

    async def read_until(ended: asyncio.Event) -> None:
        while not ended.is_set():
            await db.usage.reserve("T1", "U1", "C1", since=day, live_since=day, tokens=look)
            await asyncio.sleep(0)

    for _ in range(300):
        async with db.engine.begin() as conn:
            run = await conn.execute(
                Run.__table__.insert().values(  # type: ignore[attr-defined]
                    trigger="mention", team_id="T1", channel_id="C1", user_id="U1", started_at=utcnow()
                )
            )
            held = await conn.execute(
                BudgetReservation.__table__.insert().values(  # type: ignore[attr-defined]
                    team_id="T1", user_id="U1", channel_id="C1", tokens=600, created_at=utcnow()
                )
            )
            run_id, hold_id = run.inserted_primary_key[0], held.inserted_primary_key[0]
        ended = asyncio.Event()
        readers = [asyncio.create_task(read_until(ended)) for _ in range(4)]
        await asyncio.sleep(random.random() / 500)
        async with db.engine.begin() as conn:  # the run's end, as bot/work/traced_run.py writes it
            await conn.execute(
                update(Run).where(col(Run.id) == run_id).values(prompt_tokens=300, completion_tokens=100)
            )
            await db.usage.release(conn, hold_id)
        ended.set()
        await asyncio.gather(*readers)
        async with db.engine.begin() as conn:  # the next round starts from nothing spent
            await conn.execute(delete(Run))
    await db.close()
    assert seen and set(seen) <= {600, 400}, sorted(set(seen))


async def assert_exactly_the_digest_cap(db: Database, texts: list[str]) -> None:
    async with db.session() as s:
        made = list((await s.exec(select(DigestSchedule))).all())
    assert len(made) == DIGEST_CAP
    assert sum("set: a summary" in t for t in texts) == DIGEST_CAP
    refused = [t for t in texts if "already has 10 digests, the most a member may set up" in t]
    assert len(refused) == len(texts) - DIGEST_CAP


async def test_50_concurrent_digest_adds_make_exactly_the_cap(capped: Bot, slack) -> None:
    url = slack.response_url("digest")
    await asyncio.gather(
        *(
            capped.command("/digest", "add <#C3|support-digest> daily 09:00", response_url=url)
            for _ in range(50)
        )
    )
    await capped.idle(timeout=120)
    texts = [r["text"] for r in slack.responses]
    assert len(texts) == 50
    await assert_exactly_the_digest_cap(capped.rt.db, texts)


# --- several processes on one database ---------------------------------------------------------


@pytest.fixture
async def processes(slack, llm, db_url, tmp_path) -> AsyncIterator[list[BotProcess]]:
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    llm.default = ANSWER
    store = Database(db_url)
    await store.create_schema()  # migrated once, before three processes race to check it
    await store.close()
    env = bot_env(slack, llm, db_url, **capped_env())
    bots = [BotProcess(env, tmp_path, "serve") for _ in range(3)]
    await asyncio.gather(*(b.start() for b in bots))
    yield bots
    await asyncio.gather(*(b.stop() for b in bots))


async def wait_until(check, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_50_mentions_over_three_processes_spend_at_most_the_cap_and_one_answer(
    processes: list[BotProcess], slack, llm, db_url
) -> None:
    stamps = [new_ts() for _ in range(50)]
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(
            *(
                processes[i % 3].event(http, event_body(mention("<@UBOT> question", ts=ts)))
                for i, ts in enumerate(stamps)
            )
        )
    assert set(statuses) == {200}

    async def all_told() -> bool:
        return all(outcome(slack, ts) for ts in stamps)

    await wait_until(all_told)
    db = Database(db_url)
    try:
        await wait_until(lambda: _settled(db))
        await assert_within_the_cap(db, slack, llm, stamps)
    finally:
        await db.close()


async def _settled(db: Database) -> bool:
    runs = await queries.runs(db)
    return len(runs) == 50 and all(r.status != "running" for r in runs) and not await reservations(db)


async def test_50_digest_adds_over_three_processes_make_exactly_the_cap(
    processes: list[BotProcess], slack, db_url
) -> None:
    url = slack.response_url("digest")
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            *(
                processes[i % 3].command(
                    http, command_body("/digest", "add <#C3|support-digest> daily 09:00", response_url=url)
                )
                for i in range(50)
            )
        )

    async def all_answered() -> bool:
        return len(slack.responses) >= 50

    await wait_until(all_answered)
    db = Database(db_url)
    try:
        await assert_exactly_the_digest_cap(db, [r["text"] for r in slack.responses])
    finally:
        await db.close()
