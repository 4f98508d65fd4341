"""Issue 22: fair parsing. One person's pages never hold every parser worker while another
person waits, and a parse is part of the asking run's time: when that is up, the job leaves the
queue (or its worker dies and is replaced) and the caller is told so.

Jobs run in tests/fakes/parser_worker.py: each says when it starts and waits for the test's word,
so order and outcome are asserted by events, never by how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from openai import AsyncOpenAI

from bot.slack.answering.files import uploader
from orchestrators.agent.loop import Agent, Limits
from tests.conftest import MakeBot
from tests.fakes.files import make_pdf
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.parser_worker import ParseControl
from tests.fakes.slack_requests import dm
from tests.fakes.web import ARTICLE, FakeWeb
from tests.test_extract import alive
from tests.test_files import shared
from tools import ToolError, default_tools
from tools.call_api import call_api
from tools.parsing.extract import TIME_UP, ExtractError, Extractor
from tools.parsing.fair_slots import FairSlots
from tools.toolkit.context import MemoryTrace, ToolContext, ToolSettings

ON_CUE = "tests.fakes.parser_worker"
A, B, C = "user:UA", "user:UB", "user:UC"


async def eventually(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until `condition()` holds, looking again after each turn of the loop; the timeout only
    guards against a hang."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def control() -> AsyncIterator[ParseControl]:
    async with ParseControl() as c:
        yield c


@pytest.fixture
async def pool() -> AsyncIterator[Extractor]:
    p = Extractor(workers=2, deadline=600, worker_module=ON_CUE)
    await p.warm()
    yield p
    await p.close()
    assert not any(alive(pid) for pid in p.pids)


async def test_another_persons_page_starts_before_the_third_of_six(pool: Extractor, control) -> None:
    hostile = [asyncio.create_task(pool.run("html", control.job(f"A{i}"), owner=A)) for i in range(1, 7)]
    await control.wait(lambda: len(control.started) == 2)
    assert set(control.started) == {"A1", "A2"} and pool.slots.queued(A) == 4  # A holds both workers
    control.go_at_once.add("B1")
    normal = asyncio.create_task(pool.run("html", control.job("B1", ARTICLE.encode()), owner=B))
    await eventually(lambda: pool.slots.queued(B) == 1)

    control.release("A1")  # the first worker to come free goes to B, not to A's third page
    text = await asyncio.wait_for(normal, 60)
    assert "say_stream" in text  # B's page was really parsed
    assert control.started[2] == "B1"
    assert not any(t.done() for t in hostile[1:])  # B finished while A's pages still wait
    assert pool.slots.queued(A) >= 3  # A4..A6 had not even started

    await control.wait(lambda: "A3" in control.started)  # B's worker went back to A
    control.open()
    assert all("Hello" in t for t in await asyncio.wait_for(asyncio.gather(*hostile), 60))
    assert control.started[3] == "A3" and sorted(control.started[4:]) == ["A4", "A5", "A6"]
    assert pool.killed == 0


async def test_run_whose_time_is_up_while_queued_is_told_and_frees_its_place(
    pool: Extractor, control
) -> None:
    held = [asyncio.create_task(pool.run("html", control.job(f"A{i}"), owner=A)) for i in (1, 2)]
    await control.wait(lambda: len(control.started) == 2)
    with pytest.raises(ExtractError) as info:
        await pool.run("html", control.job("B1"), owner=B, until=time.monotonic() + 0.5)
    assert str(info.value) == TIME_UP
    assert pool.slots.queued() == 0  # its place in the queue is gone
    control.go_at_once.add("C1")
    later = asyncio.create_task(pool.run("html", control.job("C1"), owner=C))
    control.release("A1")
    assert "Hello" in await asyncio.wait_for(later, 60)
    assert control.started == ["A1", "A2", "C1"] or control.started == ["A2", "A1", "C1"]
    assert "B1" not in control.started and pool.killed == 0  # never parsed, nobody killed
    control.release("A2")
    await asyncio.wait_for(asyncio.gather(*held), 60)


async def test_run_whose_time_is_up_while_parsing_loses_its_worker_and_the_pool_refills(
    pool: Extractor, control
) -> None:
    before = list(pool.pids)
    with pytest.raises(ExtractError) as info:
        await pool.run("html", control.job("A1"), owner=A, until=time.monotonic() + 1.0)
    assert str(info.value) == TIME_UP
    assert pool.killed == 1  # it was parsing: its worker died with it
    await pool.settle()  # no job asked for it: the replacement was started by the kill
    assert pool.size == pool.full_size == 3 and len(pool.pids) == 4  # 2 workers and a spare
    dead = [pid for pid in pool.pids if not alive(pid)]
    assert len(dead) == 1 and dead[0] in before


async def test_worker_over_its_deadline_is_killed_and_the_pool_stays_full(control) -> None:
    pool = Extractor(workers=2, deadline=10.0, worker_module=ON_CUE)
    try:
        await pool.warm()
        with pytest.raises(ExtractError, match="longer than 10 s"):
            await pool.run("html", control.job("A1"), owner=A)  # never released: it overruns
        assert control.started == ["A1"]
        await pool.settle()
        assert pool.size == pool.full_size and len(pool.pids) == pool.full_size + 1
        assert pool.killed == 1
        assert [alive(pid) for pid in pool.pids].count(False) == 1
        control.go_at_once.update({"B1", "B2"})
        both = [pool.run("html", control.job(name), owner=B) for name in ("B1", "B2")]
        assert all("Hello" in t for t in await asyncio.wait_for(asyncio.gather(*both), 60))
        assert len(pool.pids) == pool.full_size + 1  # both ran on the pool as it stood
    finally:
        await pool.close()


async def test_freed_slot_goes_to_whoever_holds_fewest() -> None:
    """The queue's rule on its own: fewest held first, then served longest ago, owners' order kept."""
    slots = FairSlots(2)
    got: list[str] = []

    async def take(owner: str, name: str) -> None:
        await slots.acquire(owner)
        got.append(name)

    await take(A, "a1")
    await take(A, "a2")
    waiting = [asyncio.create_task(take(o, n)) for o, n in [(A, "a3"), (A, "a4"), (B, "b1"), (C, "c1")]]
    await eventually(lambda: slots.queued() == 4)
    slots.release(A)  # A holds 1; B and C hold none: B waited longest among them
    await eventually(lambda: len(got) == 3)
    slots.release(A)  # A holds 0, C holds 0 and was never served: C
    await eventually(lambda: len(got) == 4)
    slots.release(B)
    slots.release(C)
    await asyncio.wait_for(asyncio.gather(*waiting), 60)
    assert got == ["a1", "a2", "b1", "c1", "a3", "a4"]
    with pytest.raises(TimeoutError):
        await slots.acquire(B, timeout=0.05)  # A holds both: B's wait ends, holding nothing
    assert slots.queued() == 0 and slots.held == {A: 2}


# --- the callers pass who asks and when their run's time is up --------------------------------
@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_call_api_queues_as_its_person(pool: Extractor, control, http) -> None:
    """call_api passes ctx.requester: B's page goes before A's third, as in the pool test."""
    held = [asyncio.create_task(pool.run("html", control.job(f"A{i}"), owner=A)) for i in (1, 2, 3)]
    await control.wait(lambda: len(control.started) == 2)
    async with FakeWeb() as web:
        web.pages["b"] = control.job("B1", ARTICLE.encode()).decode()
        settings = ToolSettings(http_allow_hosts=frozenset({f"127.0.0.1:{web.port}"}))
        ctx = ToolContext(http=http, settings=settings, extractor=pool, team_id="T1", user_id="UB")
        assert ctx.requester == B
        control.go_at_once.update({"B1", "A3"})
        page = asyncio.create_task(call_api(ctx, f"{web.url}/page/b"))
        await eventually(lambda: pool.slots.queued(B) == 1)
        control.release("A1")
        assert "say_stream" in ((await asyncio.wait_for(page, 60)).text or "")
    assert control.started[2] == "B1"
    control.release("A2")
    await asyncio.wait_for(asyncio.gather(*held), 60)


async def test_files_and_pages_of_one_person_share_one_place_in_the_queue(slack, http) -> None:
    pdf = slack.add_file("r.pdf", make_pdf(["x"]), "application/pdf", user="U7")
    assert uploader([pdf]) == ToolContext(http=http, team_id="T1", user_id="U7").requester
    one, other = ToolContext(http=http), ToolContext(http=http)
    assert one.requester != other.requester  # no person (a digest, a console): each run on its own


async def test_call_api_past_the_runs_time_says_so(http) -> None:
    pool = Extractor(workers=1)
    async with FakeWeb() as web:
        settings = ToolSettings(http_allow_hosts=frozenset({f"127.0.0.1:{web.port}"}))
        ctx = ToolContext(http=http, settings=settings, extractor=pool, deadline=time.monotonic())
        with pytest.raises(ToolError, match="time limit of this answer"):
            await call_api(ctx, f"{web.url}/article")
    assert pool.pids == []  # refused before any worker was started or asked


async def test_agent_run_ends_a_parse_at_its_deadline(llm, control, http) -> None:
    """The run's deadline reaches into the parser: the page that never finishes is cut at the
    run's time limit (not the 600 s page deadline), the model reads why, and the run ends."""
    pool = Extractor(workers=1, deadline=600, worker_module=ON_CUE)
    try:
        await pool.warm()
        async with FakeWeb() as web:
            web.pages["slow"] = control.job("S1").decode()
            llm.responder = lambda body: (
                Reply(content="Out of time.")
                if "tools" not in body
                else Reply(tool_calls=[ToolCall("call_api", {"url": f"{web.url}/page/slow"})])
            )
            settings = ToolSettings(http_allow_hosts=frozenset({f"127.0.0.1:{web.port}"}))
            ctx = ToolContext(http=http, settings=settings, extractor=pool, trace=MemoryTrace())
            client = AsyncOpenAI(api_key="sk-test", base_url=llm.base_url, max_retries=0)
            agent = Agent(client, "test-model", default_tools(), Limits(deadline=10.0))
            result = await agent.run([{"role": "user", "content": "read it"}], ctx)
        assert result.status == "limited" and "time limit" in (result.stop_reason or "")
        tool_result = next(m for m in llm.requests[1]["messages"] if m["role"] == "tool")
        assert "time limit of this answer" in tool_result["content"]
        await pool.settle()
        assert pool.size == pool.full_size and pool.slots.queued() == 0
    finally:
        await pool.close()


async def test_agent_counts_time_already_spent_for_the_run(llm, http) -> None:
    """A deadline already set on the context (file reading used the run's time) is kept."""
    llm.script(Reply(content="Nothing left to look up with."))
    ctx = ToolContext(http=http, trace=MemoryTrace(), deadline=time.monotonic() - 1)
    client = AsyncOpenAI(api_key="sk-test", base_url=llm.base_url, max_retries=0)
    agent = Agent(client, "test-model", default_tools(), Limits(deadline=90.0))
    result = await agent.run([{"role": "user", "content": "hi"}], ctx)
    assert result.status == "limited" and "90-second time limit" in (result.stop_reason or "")
    assert "tools" not in llm.requests[0]  # straight to the closing, tool-less answer


async def test_files_of_a_message_stop_at_the_answers_time_limit(
    slack, llm, control, make_bot: MakeBot
) -> None:
    """Through the front door: a message's PDFs are parsed within AGENT_DEADLINE_SECONDS, the user
    is told which could not be read in time, and the run has no time left to spend."""
    bot = await make_bot(AGENT_DEADLINE_SECONDS="10")
    assert bot.rt.extractor is not None
    await bot.rt.extractor.close()
    bot.rt.extractor = Extractor(workers=2, deadline=600, worker_module=ON_CUE)
    await bot.rt.extractor.warm()
    pdfs = [
        slack.add_file(f"r{i}.pdf", control.job(f"P{i}", make_pdf([f"Chapter {i} text"])), "application/pdf")
        for i in (1, 2, 3)
    ]
    control.go_at_once.add("P1")
    llm.script(Reply(content="I read r1.pdf only."))
    await bot.event(shared(dm("summarize these"), *pdfs))
    await bot.idle(timeout=60)
    texts = [m["text"] for m in slack.posted(channel="D1")]
    assert "r2.pdf" in texts[0] and "r3.pdf" in texts[0] and "time limit" in texts[0]
    assert "r1.pdf" not in texts[0]
    assert "Chapter 1 text" in str(llm.requests[0]["messages"])
    assert "tools" not in llm.requests[0]  # the reading used the run's time: it just answers
    assert texts[1] == "I read r1.pdf only."
    assert bot.rt.extractor.killed == 1  # r2 was cut when the time was up; r3 never started
    assert "P3" not in control.started
