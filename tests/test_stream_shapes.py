"""Issue 22: a streamed answer is read as plain JSON (tools/llm/model_stream.py) over aiohttp
(tools/llm/model_transport.py). The streams below have the shapes real servers send (sources in
tests/fakes/SOURCES.md); the fake model server sends them byte for byte over loopback HTTP, to
the same client the bot builds (bot.runtime.model_http).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from bot.runtime import model_http
from orchestrators.agent.loop import Agent, Limits
from tests.fakes.openai_server import FakeOpenAI, Reply
from tools import default_tools
from tools.llm.completion import Completion
from tools.llm.model_call import ModelError, ModelRequest, call_model
from tools.llm.model_stream import EventDecoder
from tools.toolkit.context import MemoryTrace, ToolContext


def sse(*events: dict[str, Any] | str, sep: str = "\n") -> bytes:
    """A stream body: a dict is one event's JSON data, a str starting with ":" a comment line,
    any other str the data as it is ([DONE])."""
    lines = []
    for event in events:
        if isinstance(event, str) and event.startswith(":"):
            lines.append(event + sep + sep)
        else:
            data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
            lines.append(f"data: {data}{sep}{sep}")
    return "".join(lines).encode()


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """OpenAI (gpt-4o, as openai-python's recorded streams show): every delta field present,
    null ones too, with logprobs and a system fingerprint."""
    return {
        "id": "chatcmpl-AB12cd34EF56gh78IJ90kl",
        "object": "chat.completion.chunk",
        "created": 1727346180,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_5050236cbd",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


OPENAI_PARALLEL_CALLS = sse(
    openai_chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_Kx2mP0aQwZ1",
                    "type": "function",
                    "function": {"name": "current_time", "arguments": ""},
                }
            ],
            "refusal": None,
        }
    ),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"tim'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ezone": "Asia/Karachi"}'}}]}),
    openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_Rb7nQ3sLtY9",
                    "type": "function",
                    "function": {"name": "current_time", "arguments": ""},
                }
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"timezone": "Europe/Berlin"}'}}]}),
    openai_chunk({}, "tool_calls"),
    {
        **{k: v for k, v in openai_chunk({}).items() if k != "choices"},
        "choices": [],
        "usage": {
            "prompt_tokens": 82,
            "completion_tokens": 45,
            "total_tokens": 127,
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    },
    "[DONE]",
)


def ollama_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """Ollama's /v1 layer: no logprobs, fp_ollama, role and empty content in every delta."""
    return {
        "id": "chatcmpl-18",
        "object": "chat.completion.chunk",
        "created": 1744446075,
        "model": "qwen2.5-coder:7b-instruct-q8_0",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "", **delta}, "finish_reason": finish}
        ],
    }


OLLAMA_WHOLE_CALLS = sse(  # each call whole in one chunk; no usage
    ollama_chunk(
        {
            "tool_calls": [
                {
                    "id": "call_wt3op8bt",
                    "index": 0,
                    "type": "function",
                    "function": {"name": "current_time", "arguments": '{"timezone":"Asia/Karachi"}'},
                }
            ]
        }
    ),
    ollama_chunk(
        {
            "tool_calls": [
                {
                    "id": "call_rk2xy1el",
                    "index": 1,
                    "type": "function",
                    "function": {"name": "current_time", "arguments": '{"timezone":"Europe/Berlin"}'},
                }
            ]
        }
    ),
    ollama_chunk({}, "tool_calls"),
    "[DONE]",
)


def llama_cpp_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-3f1e0a2b-8c4d-4e5f-9a6b-7c8d9e0f1a2b",
        "object": "chat.completion.chunk",
        "created": 1733500000,
        "model": "qwen2.5-7b-instruct-q4_k_m.gguf",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


# llama-cpp-python serves through sse-starlette: CRLF line ends and ": ping" comment lines.
LLAMA_CPP_TEXT = sse(
    llama_cpp_chunk({"role": "assistant"}),
    llama_cpp_chunk({"content": "Karachi is "}),
    ": ping - 2024-12-06 15:00:15.123456+00:00",
    llama_cpp_chunk({"content": "four hours "}),
    llama_cpp_chunk({"content": "ahead — ✓"}),
    llama_cpp_chunk({}, "stop"),
    "[DONE]",
    sep="\r\n",
)


def vllm_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """vLLM: a stop_reason beside finish_reason; reasoning_content from its reasoning parsers."""
    return {
        "id": "chatcmpl-9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        "object": "chat.completion.chunk",
        "created": 1741000000,
        "model": "Qwen/Qwen3-8B",
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, "stop_reason": None}
        ],
    }


VLLM_REASONING = sse(
    vllm_chunk({"role": "assistant", "content": ""}),
    vllm_chunk({"reasoning_content": "Karachi is UTC+5, "}),
    vllm_chunk({"reasoning_content": "Berlin UTC+1."}),
    vllm_chunk({"content": "Four hours"}),
    vllm_chunk({"content": " ahead."}),
    vllm_chunk({}, "stop"),
    {
        "id": "chatcmpl-9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        "object": "chat.completion.chunk",
        "created": 1741000000,
        "model": "Qwen/Qwen3-8B",
        "choices": [],
        "usage": {"prompt_tokens": 31, "total_tokens": 52, "completion_tokens": 21},
    },
    "[DONE]",
)

# Older vLLM (and FastChat-derived servers) report a failure mid-stream as the error object itself.
VLLM_ERROR_MID_STREAM = sse(
    vllm_chunk({"role": "assistant", "content": ""}),
    vllm_chunk({"content": "Four"}),
    {
        "object": "error",
        "message": "The engine died unexpectedly",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    },
    "[DONE]",
)

SIGNATURE = {"google": {"thought_signature": "CiQB0e2Kb1s4dXl0aG91Z2h0LXNpZ25hdHVyZQ=="}}


def gemini_chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> dict[str, Any]:
    """Gemini's OpenAI endpoint: tool calls without an index, the step's first call signed."""
    return {
        "choices": [{"delta": {"role": "assistant", **delta}, "finish_reason": finish, "index": 0}],
        "created": 1764000000,
        "id": "aXJlZC1ieS1nZW1pbmk",
        "model": "gemini-3-pro-preview",
        "object": "chat.completion.chunk",
        **more,
    }


GEMINI_SIGNED_CALLS = sse(
    gemini_chunk(
        {
            "tool_calls": [
                {
                    "extra_content": SIGNATURE,
                    "function": {"arguments": '{"timezone":"Asia/Karachi"}', "name": "current_time"},
                    "id": "function-call-1a2b3c4d",
                    "type": "function",
                },
                {
                    "function": {"arguments": '{"timezone":"Europe/Berlin"}', "name": "current_time"},
                    "id": "function-call-5e6f7a8b",
                    "type": "function",
                },
            ]
        },
        "tool_calls",
        usage={"completion_tokens": 40, "prompt_tokens": 90, "total_tokens": 130},
    ),
    "[DONE]",
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(llm: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """The model client as the bot builds it: httpx2 requests, aiohttp bytes."""
    client = AsyncOpenAI(api_key="sk-test", base_url=llm.base_url, max_retries=0, http_client=model_http(30))
    yield client
    await client.close()


async def streamed(
    client: AsyncOpenAI, http: aiohttp.ClientSession
) -> tuple[Completion, list[str], ToolContext]:
    ctx = ToolContext(http=http, trace=MemoryTrace())
    shown: list[str] = []

    async def sink(text: str) -> None:
        shown.append(text)

    request = ModelRequest("m", [{"role": "user", "content": "What time is it in Karachi and Berlin?"}])
    completion = await call_model(client, ctx, request, trace_name="m", timeout=30, on_text=sink)
    return completion, shown, ctx


def calls(completion: Completion) -> list[tuple[str, str, str]]:
    return [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in completion.tool_calls]


async def test_openai_parallel_calls_and_usage(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=OPENAI_PARALLEL_CALLS))
    completion, shown, ctx = await streamed(client, http)
    assert calls(completion) == [
        ("call_Kx2mP0aQwZ1", "current_time", '{"timezone": "Asia/Karachi"}'),
        ("call_Rb7nQ3sLtY9", "current_time", '{"timezone": "Europe/Berlin"}'),
    ]
    assert completion.message["content"] == "" and completion.finish_reason == "tool_calls"
    assert "refusal" not in completion.message and "system_fingerprint" not in completion.message
    assert shown == []
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens, ctx.usage.estimated_calls) == (82, 45, 0)
    assert llm.last_request["stream_options"] == {"include_usage": True}


async def test_ollama_whole_calls_without_usage_are_estimated(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=OLLAMA_WHOLE_CALLS))
    completion, _, ctx = await streamed(client, http)
    assert calls(completion) == [
        ("call_wt3op8bt", "current_time", '{"timezone":"Asia/Karachi"}'),
        ("call_rk2xy1el", "current_time", '{"timezone":"Europe/Berlin"}'),
    ]
    assert ctx.usage.estimated_calls == 1 and ctx.usage.prompt_tokens > 0


async def test_llama_cpp_crlf_lines_cut_across_reads(llm: FakeOpenAI, client, http) -> None:
    """sse-starlette's CRLF, sent 7 bytes at a time: lines (and CRLFs, and a multi-byte
    character) are cut wherever the network cuts them."""
    llm.script(Reply(sse=LLAMA_CPP_TEXT, sse_piece=7))
    completion, shown, _ = await streamed(client, http)
    assert completion.text == "Karachi is four hours ahead — ✓"
    assert "".join(shown) == completion.text and completion.finish_reason == "stop"


async def test_vllm_reasoning_is_kept_for_the_next_request(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=VLLM_REASONING))
    completion, shown, ctx = await streamed(client, http)
    assert completion.text == "Four hours ahead." and "".join(shown) == completion.text
    assert completion.message["reasoning_content"] == "Karachi is UTC+5, Berlin UTC+1."
    assert "stop_reason" not in completion.message
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (31, 21)


async def test_an_error_inside_the_stream_is_the_models_failure(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=VLLM_ERROR_MID_STREAM))
    with pytest.raises(ModelError, match="The engine died unexpectedly"):
        await streamed(client, http)
    overloaded = sse(
        openai_chunk({"content": "x"}), {"error": {"message": "overloaded", "type": "server_error"}}
    )
    llm.script(Reply(sse=overloaded))
    with pytest.raises(ModelError, match="overloaded"):
        await streamed(client, http)


async def test_a_body_broken_off_is_the_models_failure(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=LLAMA_CPP_TEXT[:200], sse_abort=True))
    with pytest.raises(ModelError) as caught:
        await streamed(client, http)
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


async def test_a_body_left_open_after_done_still_ends_the_answer(llm: FakeOpenAI, client, http) -> None:
    llm.script(Reply(sse=LLAMA_CPP_TEXT, sse_hold=True))
    completion, _, _ = await streamed(client, http)
    assert completion.text == "Karachi is four hours ahead — ✓"


async def test_streams_read_to_their_end_keep_the_connection(llm: FakeOpenAI, client, http) -> None:
    before = llm.connections
    for body in (OPENAI_PARALLEL_CALLS, OLLAMA_WHOLE_CALLS, VLLM_REASONING, LLAMA_CPP_TEXT):
        llm.script(Reply(sse=body, sse_piece=50))
        await streamed(client, http)
    assert llm.connections - before == 1


async def test_gemini_signature_goes_back_unchanged(llm: FakeOpenAI, client, http) -> None:
    """The signed call's extra_content must be in the next request of the turn (else Gemini's
    400); the request is checked against OpenAI's schema by the fake."""
    llm.script(Reply(sse=GEMINI_SIGNED_CALLS), Reply(content="Karachi is four hours ahead."))
    agent = Agent(client, "gemini-3-pro-preview", default_tools(), Limits())
    ctx = ToolContext(http=http, trace=MemoryTrace())

    async def sink(_: str) -> None: ...

    result = await agent.run([{"role": "user", "content": "Karachi vs Berlin?"}], ctx, sink)
    assert result.text == "Karachi is four hours ahead."
    sent = next(m for m in llm.requests[1]["messages"] if m.get("tool_calls"))
    assert sent["content"] == ""  # never null
    assert sent["tool_calls"][0]["extra_content"] == SIGNATURE
    assert "extra_content" not in sent["tool_calls"][1]
    assert [c["id"] for c in sent["tool_calls"]] == ["function-call-1a2b3c4d", "function-call-5e6f7a8b"]
    assert llm.requests[0]["tool_choice"] == "auto"
    first = next(s for s in ctx.trace.steps if s.kind == "model")
    assert (first.prompt_tokens, first.completion_tokens) == (90, 40)


async def test_a_refused_connection_and_a_silent_server_keep_openais_errors(llm: FakeOpenAI, http) -> None:
    """`switchboard doctor` tells "cannot reach" from "did not answer in time" by these types."""
    closed = AsyncOpenAI(
        api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, http_client=model_http(30)
    )
    with pytest.raises(ModelError) as refused:
        await streamed(closed, http)
    assert type(refused.value.__cause__) is openai.APIConnectionError
    await closed.close()
    impatient = AsyncOpenAI(api_key="k", base_url=llm.base_url, max_retries=0, http_client=model_http(0.2))
    llm.script(Reply(content="late", delay=5))  # 25 times the read timeout
    with pytest.raises(ModelError) as slow:
        await streamed(impatient, http)
    assert isinstance(slow.value.__cause__, openai.APITimeoutError)
    await impatient.close()


def test_events_are_the_same_wherever_the_bytes_are_cut() -> None:
    body = (
        b': comment\r\nevent: message\r\nid: 7\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b'data:{"b":2}\r\r'
        b"retry: 10\ndata: [DONE]\n\n"
    )
    expected = [b'{"a":\n1}', b'{"b":2}', b"[DONE]"]
    for cut in range(len(body) + 1):
        decoder = EventDecoder()
        assert decoder.feed(body[:cut]) + decoder.feed(body[cut:]) == expected, cut
    decoder = EventDecoder()
    assert [e for i in range(len(body)) for e in decoder.feed(body[i : i + 1])] == expected
