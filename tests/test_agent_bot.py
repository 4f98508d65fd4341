"""Issue 3 end to end: a mention drives the agent loop through real tools and the database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention, thread_message
from tests.fakes.web import FakeWeb


@pytest.fixture
async def web() -> AsyncIterator[FakeWeb]:
    fake = FakeWeb()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def tool_bot(weather, web, make_bot: MakeBot) -> Bot:
    return await make_bot(weather=weather, TOOL_HTTP_ALLOW_HOSTS=f"127.0.0.1:{web.port}")


async def test_two_cities_are_looked_up_concurrently(tool_bot: Bot, slack, llm, weather) -> None:
    weather.delay = 0.3
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("get_weather", {"location": "Karachi", "days": 2}),
                ToolCall("get_weather", {"location": "Berlin", "days": 2}),
            ]
        ),
        Reply(content="Karachi is warmer than Berlin."),
    )
    await tool_bot.event(mention("<@UBOT> is Karachi warmer than Berlin tomorrow?", ts="10.1"))
    await tool_bot.idle()
    assert weather.max_in_flight >= 2  # the two lookups overlapped
    results = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert "Karachi" in results[0]["content"] and "Berlin" in results[1]["content"]
    (posted,) = slack.posted(channel="C1")
    assert "warmer" in str(posted)
    run = await queries.last_run(tool_bot.rt.db)
    steps = await queries.steps(tool_bot.rt.db, run.id)
    assert [s.kind for s in steps].count("model") == 2
    tools = sorted(s.name for s in steps if s.kind == "tool")  # get_weather's own steps are traced too
    assert tools == ["geocode", "geocode", "get_forecast", "get_forecast", "get_weather", "get_weather"]
    assert all(s.duration_ms >= 0 and s.output_chars > 0 for s in steps if s.kind == "tool")
    assert run.llm_calls == 2 and run.prompt_tokens > 0


async def test_follow_up_sees_the_previous_tool_results(tool_bot: Bot, llm) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("get_weather", {"location": "Tokyo"})]),
        Reply(content="Tokyo looks fine."),
        Reply(content="As I said, fine."),
    )
    await tool_bot.event(mention("<@UBOT> weather in Tokyo", ts="20.1"))
    await tool_bot.idle()
    await tool_bot.event(thread_message("what numbers did you get?", ts="20.5", thread_ts="20.1"))
    await tool_bot.idle()
    third = llm.requests[2]["messages"]
    roles = [m["role"] for m in third[1:]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert "Tokyo" in third[3]["content"]


async def test_model_chosen_urls_cannot_reach_private_addresses(tool_bot: Bot, llm, web) -> None:
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("call_api", {"url": "http://169.254.169.254/latest/meta-data/"}),
                ToolCall("call_api", {"url": f"http://127.0.0.1:{web.port + 1}/"}),
                ToolCall("call_api", {"url": f"{web.url}/redirect?to=http://10.0.0.1/admin"}),
            ]
        ),
        Reply(content="I could not fetch those."),
    )
    await tool_bot.event(mention("<@UBOT> fetch these", ts="30.1"))
    await tool_bot.idle()
    results = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert all("refused" in r for r in results), results
    assert "metadata" in results[0]


async def test_a_long_tool_thread_never_sends_a_broken_history(llm, weather, web, make_bot: MakeBot) -> None:
    harness = await make_bot(weather=weather, HISTORY_TOKEN_BUDGET="600")
    llm.responder = lambda body: (
        Reply(tool_calls=[ToolCall("get_weather", {"location": "Berlin"})])
        if body["messages"][-1]["role"] == "user"
        else Reply(content="Berlin: " + "details " * 60)
    )
    await harness.event(mention("<@UBOT> start", ts="40.1"))
    await harness.idle()
    for i in range(6):
        await harness.event(thread_message(f"again {i}", ts=f"40.{i + 2}", thread_ts="40.1"))
        await harness.idle()
    # the llm fixture asserts no request had an orphaned or unanswered tool call
    assert len(llm.requests) == 14
    assert len(llm.requests[-1]["messages"]) < 16  # trimmed to the budget
