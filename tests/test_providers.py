"""Issue 12: the provider matrix. The same conversations, through the signed HTTP front door,
against the fake model server behaving like each real server (tests/fakes/model_quirks.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes import model_quirks
from tests.fakes.model_quirks import PROFILES, Quirks
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall
from tests.fakes.slack_requests import mention, thread_message

ANSWER = "It is 09:00 in Karachi and 05:00 in Berlin, so Karachi is four hours ahead."
EXPECTED_NOTE = {
    "length": "cut off",
    "content_filter": "content filter",
    "refusal": model_quirks.REFUSAL,
}


@pytest.fixture(params=PROFILES, ids=[p.name for p in PROFILES])
async def server(request) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(request.param)
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.schema_errors == [], "the bot sent a request the OpenAI schema rejects"
    assert fake.shape_errors == [], "the bot sent an orphaned or unanswered tool call"


@pytest.fixture
async def bot(server, make_bot: MakeBot) -> Bot:
    return await make_bot(llm=server)


def answered(slack, thread_ts: str) -> str:
    return " ".join(str(m.get("text", "")) + str(m.get("blocks", "")) for m in slack.posted("C1", thread_ts))


def two_clocks(body: dict) -> Reply:
    """Two parallel tool calls for a question, then the answer once their results are in."""
    if body["messages"][-1]["role"] == "tool":
        return Reply(content=ANSWER)
    if "again" in str(body["messages"][-1]["content"]):
        return Reply(content="Still four hours.")
    return Reply(
        tool_calls=[
            ToolCall("current_time", {"timezone": "Asia/Karachi"}),
            ToolCall("current_time", {"timezone": "Europe/Berlin"}),
        ]
    )


async def test_parallel_tool_calls_then_a_follow_up(bot: Bot, slack, server: FakeOpenAI) -> None:
    quirks: Quirks = server.quirks
    server.responder = two_clocks
    await bot.event(mention("<@UBOT> how far ahead is Karachi of Berlin?", ts="50.1"))
    await bot.idle()
    second = server.requests[1]["messages"]
    calls = second[-3]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["current_time", "current_time"]  # not merged
    results = [m["content"] for m in second if m["role"] == "tool"]
    assert "Asia/Karachi" in results[0] and "Europe/Berlin" in results[1]
    text = answered(slack, "50.1")
    expected = EXPECTED_NOTE.get(quirks.final_answer or "", ANSWER[: len(ANSWER) // 2])
    assert expected in text
    run = (await queries.runs(bot.rt.db))[-1]
    assert run.status == "ok" and run.llm_calls == 2
    assert run.prompt_tokens > 0 and run.completion_tokens > 0  # estimated where usage is missing

    await bot.event(thread_message("and again?", ts="50.2", thread_ts="50.1"))
    await bot.idle()
    third = server.requests[2]["messages"]
    assert all(isinstance(m.get("content"), str | list) for m in third)  # never null
    assert "Still four hours" in answered(slack, "50.1") or quirks.final_answer


async def test_the_same_question_through_ask_is_not_streamed(bot: Bot, slack, server: FakeOpenAI) -> None:
    """/ask runs the agent without streaming: the non-streamed reading of every quirk."""
    server.responder = two_clocks
    await bot.command("/ask", "how far ahead is Karachi of Berlin?")
    await bot.idle()
    assert not any(r.get("stream") for r in server.requests)
    second = server.requests[1]["messages"]
    results = [m["content"] for m in second if m["role"] == "tool"]
    assert len(results) == 2 and "Asia/Karachi" in results[0] and "Europe/Berlin" in results[1]
    assert all(m.get("content") is not None for m in second)
    expected = EXPECTED_NOTE.get(server.quirks.final_answer or "", ANSWER[: len(ANSWER) // 2])
    assert expected in str(slack.posted("C1"))
    run = (await queries.runs(bot.rt.db))[-1]
    assert run.status == "ok" and run.prompt_tokens > 0


async def test_a_message_too_long_for_the_window_does_not_poison_the_thread(
    bot: Bot, slack, server: FakeOpenAI
) -> None:
    server.default = Reply(content="Short answer.")
    long_text = "lorem ipsum dolor " * 2_100  # ~10k tokens, under Slack's 40,000 characters
    await bot.event(mention("<@UBOT> read this: " + long_text, ts="60.1"))
    await bot.idle()
    first = answered(slack, "60.1")
    assert "too long" in first or "Short" in first or server.quirks.final_answer
    if server.quirks.context_tokens:  # refused once, then answered from the shortened message
        assert "Short answer." in first and "too long" in first
        assert server.requests[0]["messages"][-1] != server.requests[1]["messages"][-1]
    await bot.event(thread_message("a short question", ts="60.2", thread_ts="60.1"))
    await bot.idle()
    runs = await queries.runs(bot.rt.db)
    assert runs[-1].status == "ok", runs[-1].error
    last = server.requests[-1]["messages"]
    assert last[-1]["content"] == "a short question"


async def test_a_context_error_is_retried_once_with_less_history(make_bot: MakeBot, slack) -> None:
    """The server's window is smaller than the one configured: its 400 is retried, smaller."""
    async with FakeOpenAI(Quirks("tiny", context_tokens=3_000)) as server:
        harness = await make_bot(llm=server, OPENAI_CONTEXT_TOKENS="100000")
        try:
            server.default = Reply(content="Fits now.")
            await harness.event(mention("<@UBOT> " + "words and more words " * 1_200, ts="70.1"))
            await harness.idle()
            assert len(server.requests) == 2  # the refused prompt, then one smaller retry
            assert len(str(server.requests[1]["messages"])) < len(str(server.requests[0]["messages"]))
            assert "Fits now." in answered(slack, "70.1")
            assert "too long" in answered(slack, "70.1")  # the user is told it was shortened
        finally:
            await harness.close()


async def test_a_null_reply_stored_by_an_older_version_does_not_break_the_thread(
    bot: Bot, slack, server: FakeOpenAI
) -> None:
    """Ollama (400) and llama-cpp-python (500) reject `content: null`; such rows are repaired."""
    server.default = Reply(content="Fine again.")
    await bot.event(mention("<@UBOT> hello", ts="95.1"))
    await bot.idle()
    convo = await bot.rt.db.conversations.find("T1", "C1", "95.1")
    assert convo is not None and convo.id is not None
    await bot.rt.db.conversations.add_messages(convo.id, [{"role": "assistant", "content": None}])
    await bot.event(thread_message("still there?", ts="95.2", thread_ts="95.1"))
    await bot.idle()
    last = server.requests[-1]["messages"]
    assert all(m.get("content") is not None for m in last)
    assert (await queries.runs(bot.rt.db))[-1].status == "ok"


async def test_a_server_not_set_up_for_tools_still_answers(make_bot: MakeBot, slack, caplog) -> None:
    """vLLM without its tool flags refuses every request with tools: answer without them, say so,
    and tell the operator which setting is missing."""
    async with FakeOpenAI(Quirks("vllm-without-tool-parser", auto_tool_choice_refused=True)) as server:
        harness = await make_bot(llm=server)
        try:
            server.default = Reply(content="Karachi is usually four hours ahead.")
            await harness.event(mention("<@UBOT> how far ahead is Karachi?", ts="97.1"))
            await harness.idle()
            text = answered(slack, "97.1")
            assert "four hours ahead" in text and "not set up for tools" in text
            assert [("tools" in r) for r in server.requests] == [True, False]
            assert any("cannot use tools" in r.getMessage() for r in caplog.records)
        finally:
            await harness.close()
