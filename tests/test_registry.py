"""The registry: schemas from signatures, and every failure of a run as a result the model can read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from tools import ToolError, ToolRegistry, default_tools, tool
from tools.toolkit.context import MemoryTrace, ToolContext
from tools.toolkit.registry import describe
from tools.weather import get_forecast

SPEC = Path(__file__).parent / "fakes" / "specs" / "openai-chat-completions-request.schema.json"


@pytest.fixture
async def ctx() -> AsyncIterator[ToolContext]:
    async with aiohttp.ClientSession() as session:
        yield ToolContext(http=session, trace=MemoryTrace())


@tool(timeout=30, max_output_chars=50)  # a bound on a hang only: it answers at once
async def echo(ctx: ToolContext, word: str, times: Annotated[int, Field(ge=1, le=5)] = 1) -> dict:
    """Repeat a word.

    Longer explanation that stays out of the schema.

    Args:
        word: what to repeat,
            one word only.
        times: how often.
    """
    return {"out": " ".join([word] * times)}


@tool
async def explode(ctx: ToolContext) -> None:
    """Always fails."""
    raise RuntimeError("the disk is on fire")


@tool(timeout=0.05)
async def hang(ctx: ToolContext) -> None:
    """Never answers."""
    await asyncio.Event().wait()


@tool(name="own_timeout")
async def own_timeout(ctx: ToolContext) -> None:
    """Its HTTP client gave up, not the registry."""
    raise TimeoutError("socket read")


@dataclass
class Point:
    x: int
    y: int


class Label(BaseModel):
    text: str


@tool
async def shapes(ctx: ToolContext) -> dict:
    """Mixed return types."""
    return {"point": Point(1, 2), "labels": [Label(text="a"), Label(text="b")]}


def test_schema_from_signature() -> None:
    fn = echo.schema()["function"]
    assert fn["name"] == "echo" and fn["description"] == "Repeat a word."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["word"] and params["additionalProperties"] is False
    assert params["properties"]["times"] == {
        "default": 1,
        "maximum": 5,
        "minimum": 1,
        "type": "integer",
        "description": "how often.",
    }
    assert params["properties"]["word"]["description"] == "what to repeat, one word only."
    assert "title" not in json.dumps(params)


def test_nested_models_are_inlined() -> None:
    text = json.dumps(get_forecast.schema())
    assert "$ref" not in text and "$defs" not in text and '"title"' not in text
    place = get_forecast.parameters["properties"]["place"]
    assert place["type"] == "object" and "latitude" in place["properties"]


def test_describe_reads_the_args_section() -> None:
    summary, args = describe(
        "Do a thing\nacross lines.\n\nArgs:\n    a (int): first.\n    b: second.\n\nReturns:\n    x"
    )
    assert summary == "Do a thing across lines."
    assert args == {"a": "first.", "b": "second."}


def test_every_default_tool_schema_is_a_valid_request() -> None:
    validator = Draft202012Validator(json.loads(SPEC.read_text()))
    tools = default_tools()
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools.schemas()}
    assert [e.message for e in validator.iter_errors(body)] == []
    for schema in tools.schemas():
        text = json.dumps(schema)
        assert "$ref" not in text and "$defs" not in text
        assert schema["function"]["parameters"]["additionalProperties"] is False
    assert tools.names == [
        "get_weather",
        "search_web",
        "call_api",
        "summarize",
        "read_channel",
        "current_time",
    ]


def test_registry_lookup_and_extension() -> None:
    base = ToolRegistry([echo])
    bigger = base.extended(explode)
    assert base.names == ["echo"] and bigger.names == ["echo", "explode"]
    assert bigger.get("explode") is explode and bigger.get("nope") is None
    assert [s["function"]["name"] for s in bigger.schemas()] == ["echo", "explode"]


async def test_run_ok_and_capped(ctx: ToolContext) -> None:
    reg = ToolRegistry([echo, shapes])
    ok = await reg.run("echo", '{"word": "hi", "times": 2}', ctx)
    assert ok.ok and ok.error is None and json.loads(ok.content) == {"out": "hi hi"} and not ok.truncated
    capped = await reg.run("echo", '{"word": "abcdefghij", "times": 5}', ctx)
    assert capped.ok and capped.truncated
    assert capped.content.startswith('{"out": "abcdefghij') and "output truncated" in capped.content
    mixed = await reg.run("shapes", "", ctx)
    assert json.loads(mixed.content) == {"point": {"x": 1, "y": 2}, "labels": [{"text": "a"}, {"text": "b"}]}


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("ech", "{}", "There is no tool called 'ech'. Available tools: echo, explode, hang, own_timeout"),
        ("echo", "not json", "The arguments for echo are not valid JSON"),
        ("echo", "[1]", "The arguments for echo must be a JSON object, not list"),
        ("echo", '{"word": "hi", "times": 9}', "times: Input should be less than or equal to 5"),
        ("echo", '{"times": 1}', "word: Field required"),
        ("echo", '{"word": "x", "extra": 1}', "extra: unknown argument"),
        ("explode", "{}", "explode failed: the disk is on fire"),
        ("hang", "{}", "hang timed out after 0.05 s"),
        ("own_timeout", "{}", "own_timeout failed: it timed out (socket read)"),
    ],
)
async def test_every_failure_is_a_readable_result(
    ctx: ToolContext, name: str, arguments: str, expected: str
) -> None:
    reg = ToolRegistry([echo, explode, hang, own_timeout])
    result = await reg.run(name, arguments, ctx)
    assert not result.ok and result.name == name
    assert expected in result.error
    assert json.loads(result.content) == {"error": result.error}
    [step] = ctx.trace.steps  # exactly one step per run, failures included
    assert step.kind == "tool" and step.name == name and step.error == result.error


async def test_direct_calls_validate_trace_and_raise(ctx: ToolContext) -> None:
    assert await echo(ctx, "a", times=2) == {"out": "a a"}
    step = ctx.trace.steps[-1]
    assert json.loads(step.arguments) == {"word": "a", "times": 2} and step.output_chars > 0
    with pytest.raises(ToolError, match="times: Input should be greater than or equal to 1"):
        await echo(ctx, "a", times=0)
    with pytest.raises(ToolError, match="explode failed: the disk is on fire"):
        await explode(ctx)
    with pytest.raises(ToolError, match="takes 2 arguments"):
        await echo(ctx, "a", 1, 2)
    assert len(ctx.trace.steps) == 3  # the wrong-arity call never started


async def test_the_status_line_is_the_tools_own(ctx: ToolContext) -> None:
    @tool(status="Counting sheep…")
    async def count(ctx: ToolContext) -> int:
        """Count."""
        return 3

    registry = ToolRegistry([count, echo])
    assert registry.status("count") == "Counting sheep…"
    assert registry.status("echo") == "Running echo…"  # no status given: a plain default
    assert registry.status("<!channel> urgent") == "Running a tool…"  # invented: never repeated
    assert default_tools().status("get_weather") == "Checking the weather…"
