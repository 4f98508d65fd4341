"""Issue 12 and 11: what one model call sends and how an answer is read, streamed or not.

The assembler reads the JSON objects of the stream's events as they arrive (tools/llm/model_stream.py);
tests/test_stream_shapes.py feeds it recorded streams of real servers through the fake server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from orchestrators.agent.history import sanitize, trim_history
from orchestrators.agent.loop import Agent, Limits
from tests.fakes.model_quirks import Quirks
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall
from tools import ToolRegistry, default_tools, tool
from tools.llm.completion import StreamAssembler
from tools.llm.model_call import ModelRequest
from tools.toolkit.context import MemoryTrace, ToolContext, ToolSettings

IN_FLIGHT = {"now": 0, "most": 0}


@tool(timeout=5)
async def gauge(ctx: ToolContext, n: int = 0) -> dict:
    """Counts how many of its calls run at once."""
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    await asyncio.sleep(0)  # let the other calls of the turn start, if the gate allows
    for _ in range(5):
        await asyncio.sleep(0)
    IN_FLIGHT["now"] -= 1
    return {"n": n}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def assemble(*deltas: dict[str, Any]) -> Any:
    assembler = StreamAssembler()
    for d in deltas:
        assembler.add(chunk(d))
    return assembler.result()


def test_calls_with_a_repeated_index_but_new_ids_stay_apart() -> None:
    """LiteLLM and Gemini: both calls at index 0; joined by index they became one broken call."""
    result = assemble(
        {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "current_time"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"timezone": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"UTC"}'}}]},
        {"tool_calls": [{"index": 0, "id": "b", "type": "function", "function": {"name": "current_time"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
    )
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in result.tool_calls] == [
        ("a", "current_time", '{"timezone": "UTC"}'),
        ("b", "current_time", "{}"),
    ]


def test_calls_without_an_index_and_repeated_names() -> None:
    result = assemble(
        {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"x"'}}]},
        {"tool_calls": [{"function": {"name": "f", "arguments": ": 1}"}}]},  # name sent again
        {"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]},
    )
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in result.tool_calls] == [
        ("f", '{"x": 1}'),
        ("g", "{}"),
    ]


def test_provider_fields_are_kept_for_the_next_request() -> None:
    signature = {"google": {"thought_signature": "c2ln"}}
    result = assemble(
        {"reasoning_content": "Two zones, "},
        {"reasoning_content": "two calls."},
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}, "extra_content": signature}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
    )
    assert result.message["reasoning_content"] == "Two zones, two calls."
    assert result.tool_calls[0]["extra_content"] == signature
    assert result.message["content"] == ""  # never null


def test_refusal_is_the_text_and_finish_reason_is_kept() -> None:
    assembler = StreamAssembler(separator="\n\n")
    shown = assembler.add(chunk({"refusal": "I can't help with that."}, "stop"))
    result = assembler.result()
    assert shown == "\n\nI can't help with that."
    assert result.text == "I can't help with that." and result.refusal and result.finish_reason == "stop"


def test_a_usage_that_is_not_an_object_is_left_to_the_estimate() -> None:
    """A broken server's `usage: "lots"` must not fail the accounting after a good answer."""
    assembler = StreamAssembler()
    assembler.add(chunk({"content": "hi"}, "stop"))
    assembler.add({"choices": [], "usage": "lots"})
    assert assembler.result().usage is None and assembler.result().text == "hi"


def test_request_body_every_server_accepts() -> None:
    body = ModelRequest("m", [{"role": "user", "content": "hi"}], tools=[{"type": "function"}]).body()
    assert body["tool_choice"] == "auto" and body["max_completion_tokens"] == 8192
    old = ModelRequest("m", [], output_tokens_param="max_tokens", max_output_tokens=99).body()
    assert old["max_tokens"] == 99 and "tools" not in old and "tool_choice" not in old


def test_stored_null_content_and_empty_replies_are_repaired() -> None:
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    stored = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "a", "content": "r"},
        {"role": "assistant", "content": None},  # an empty reply an older version stored
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url"}]},
    ]
    sent = trim_history(stored, 10_000)
    assert all(m["content"] is not None for m in sent)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[-1]["content"] == stored[-1]["content"]  # list content (images) passes through
    assert sanitize([{"role": "assistant", "content": " "}]) == []


def test_no_tool_schema_has_a_limit_llama_cpp_cannot_compile() -> None:
    """llama-cpp-python's grammar compiler crashes on maxLength 2000 / 200000; big limits are
    checked in code instead."""

    def limits(node: Any) -> list[int]:
        if isinstance(node, dict):
            found = [v for k, v in node.items() if k in ("maxLength", "maxItems") and isinstance(v, int)]
            return found + [x for v in node.values() for x in limits(v)]
        if isinstance(node, list):
            return [x for v in node for x in limits(v)]
        return []

    from orchestrators.workflows import workflow_tools

    registry = default_tools().extended(*workflow_tools())
    assert max(limits(registry.schemas()), default=0) <= 500


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def agent_for(fake: FakeOpenAI, registry: ToolRegistry, **limits: Any) -> Agent:
    client = AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    return Agent(client, "test-model", registry, Limits(**limits))


async def test_tool_calls_beyond_the_turn_cap_get_an_error_the_model_reads(llm, http) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("gauge", {"n": i}) for i in range(12)]),
        Reply(content="done"),
    )
    agent = agent_for(llm, ToolRegistry([gauge]), max_tool_calls_per_turn=10, tool_concurrency=3)
    IN_FLIGHT["most"] = 0
    result = await agent.run([{"role": "user", "content": "go"}], ToolContext(http=http))
    results = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == 12 and sum('"n"' in r for r in results) == 10
    assert all("at most 10 tool calls" in r for r in results[10:])
    assert result.tools_used.count("gauge") == 10
    assert IN_FLIGHT["most"] == 3  # the gate held the rest back


async def test_the_run_cap_on_tool_calls_ends_the_run_with_an_answer(llm, http) -> None:
    llm.responder = lambda body: (
        Reply(content="Stopping here.")
        if "tools" not in body
        else Reply(tool_calls=[ToolCall("gauge", {"n": 1}), ToolCall("gauge", {"n": 2})])
    )
    agent = agent_for(llm, ToolRegistry([gauge]), max_tool_calls=3, max_steps=10)
    result = await agent.run([{"role": "user", "content": "go"}], ToolContext(http=http))
    assert result.status == "limited" and "3 tool calls" in (result.stop_reason or "")
    assert result.tools_used.count("gauge") == 3


async def test_the_token_budget_counts_estimates_when_a_stream_has_no_usage(http) -> None:
    """llama-cpp-python ignores stream_options: without estimates the budget never stopped a run."""
    async with FakeOpenAI(Quirks("no-usage", stream_usage=False)) as fake:
        fake.responder = lambda body: (
            Reply(content="Out of budget.")
            if "tools" not in body
            else Reply(tool_calls=[ToolCall("gauge", {"n": 1})], content="x" * 4_000)
        )
        agent = agent_for(fake, ToolRegistry([gauge]), token_budget=5_000, max_steps=20)
        ctx = ToolContext(http=http, settings=ToolSettings(), trace=MemoryTrace())

        async def sink(_: str) -> None: ...

        result = await agent.run([{"role": "user", "content": "go"}], ctx, sink)
        assert result.status == "limited" and "tokens" in (result.stop_reason or "")
        assert ctx.usage.estimated_calls == ctx.usage.llm_calls and ctx.usage.total_tokens >= 5_000
        assert all(s.prompt_tokens > 0 for s in ctx.trace.steps if s.kind == "model")


async def test_a_run_can_use_its_own_model_and_a_subset_of_tools(llm, http) -> None:
    agent = agent_for(llm, default_tools())
    await agent.run(
        [{"role": "user", "content": "hi"}],
        ToolContext(http=http),
        model="other-model",
        tools=["current_time"],
    )
    assert llm.last_request["model"] == "other-model"
    assert llm.tool_names_sent(0) == ["current_time"]


async def test_a_context_error_worded_like_vllm_is_retried_once_smaller(llm, http) -> None:
    """vLLM and LiteLLM say "maximum context length is N" with no code; N sizes the retry."""
    too_long = "This model's maximum context length is 2048 tokens. However, you requested 9000 tokens."
    llm.script(Reply(status=400, error_message=too_long), Reply(content="fits"))
    agent = agent_for(llm, default_tools())
    result = await agent.run([{"role": "user", "content": "words " * 6_000}], ToolContext(http=http))
    assert result.text.startswith("fits") and "too long" in result.text
    retry = llm.requests[1]
    assert len(retry["messages"][-1]["content"]) < 2048 * 4
    assert retry["max_completion_tokens"] <= 2048 // 4


async def test_a_stream_that_ignores_the_output_cap_is_cut_there(llm, http) -> None:
    """Issue 11: a hostile server streamed 12 MB; now a stream stops at the cap's worth of text."""
    llm.script(Reply(content="blah " * 20_000))
    agent = agent_for(llm, default_tools())
    ctx = ToolContext(http=http, settings=ToolSettings(max_output_tokens=100))
    seen: list[str] = []

    async def sink(text: str) -> None:
        seen.append(text)

    result = await agent.run([{"role": "user", "content": "talk"}], ctx, sink)
    assert len(result.text) < 2_000 and "cut off" in result.text
    assert "".join(seen) == result.text


@tool(timeout=5, max_output_chars=10_000)
async def big_page(ctx: ToolContext, n: int = 0) -> dict:
    """Returns a long page."""
    return {"n": n, "text": "page text " * 900}


async def test_tool_results_that_outgrow_a_small_window_are_cut_before_sending(http) -> None:
    """A 4k window and four 9k-character results: the next request fits without a 400."""
    async with FakeOpenAI(Quirks("tiny", context_tokens=4_096)) as fake:
        fake.script(
            Reply(tool_calls=[ToolCall("big_page", {"n": i}) for i in range(4)]),
            Reply(content="read them all"),
        )
        agent = agent_for(fake, ToolRegistry([big_page]), context_tokens=4_096)
        result = await agent.run([{"role": "user", "content": "read four pages"}], ToolContext(http=http))
        assert result.text == "read them all" and len(fake.requests) == 2  # no refused request
        second = fake.requests[1]
        assert second["messages"][1]["content"] == "read four pages"
        assert len([m for m in second["messages"] if m["role"] == "tool"]) == 4
        assert second["max_completion_tokens"] <= 4_096 // 4


async def test_an_ollama_model_without_tool_support_is_asked_again_without_tools(llm, http) -> None:
    llm.script(
        Reply(status=400, error_message="registry.ollama.ai/library/gemma:2b does not support tools"),
        Reply(content="Hello there."),
    )
    result = await agent_for(llm, default_tools()).run(
        [{"role": "user", "content": "hi"}], ToolContext(http=http)
    )
    assert result.text.startswith("Hello there.") and "not set up for tools" in result.text
    assert "tools" in llm.requests[0] and "tools" not in llm.requests[1]
