"""Read/write modes: a write call runs only with the requesting user's approval."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.web import FakeWeb
from tools import ToolContext, ToolSettings, default_tools
from tools.toolkit.context import MemoryTrace
from tools.toolkit.registry import Tool


@pytest.fixture
async def web() -> AsyncIterator[FakeWeb]:
    async with FakeWeb() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Decisions:
    """Approvals answered from a list, remembering what was asked (the Approvals protocol)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None:
        self.asked.append((tool, arguments))
        return self.answers.pop(0)


def test_every_tool_declares_a_mode() -> None:
    tools: dict[str, Tool] = default_tools().tools
    call_api = tools.pop("call_api")
    assert all(t.mode == "read" for t in tools.values())
    assert call_api.mode_for({"url": "https://x.test/", "method": "GET", "body": None}) == "read"
    assert call_api.mode_for({"url": "https://x.test/", "method": "DELETE", "body": None}) == "write"
    assert call_api.mode_for({"url": "https://x.test/", "method": "GET", "body": {"a": 1}}) == "write"


async def test_a_write_call_waits_for_approval(http, web: FakeWeb) -> None:
    settings = ToolSettings(http_allow_hosts=frozenset({f"127.0.0.1:{web.port}"}))
    registry = default_tools()
    post = json.dumps({"url": f"{web.url}/api/echo", "method": "POST", "body": {"ticket": "T-1"}})

    refused = await registry.run("call_api", post, ToolContext(http=http, settings=settings))
    assert not refused.ok and "approval" in refused.error and "not run" in refused.error

    denied = Decisions("Bob denied it.")
    trace = MemoryTrace()
    ctx = ToolContext(http=http, settings=settings, approvals=denied, trace=trace)
    result = await registry.run("call_api", post, ctx)
    assert not result.ok and result.error == "Bob denied it."
    assert trace.steps[-1].error == "Bob denied it."
    assert web.received == []  # nothing was sent before an approval

    approved = Decisions(None)
    ctx = ToolContext(http=http, settings=settings, approvals=approved)
    result = await registry.run("call_api", post, ctx)
    assert result.ok and json.loads(result.content)["json_data"] == {"method": "POST", "received": 17}
    assert approved.asked == [("call_api", json.loads(post))]  # the exact arguments were shown
    assert web.received == [("POST", b'{"ticket": "T-1"}')]

    reads = Decisions()  # a GET never asks
    ctx = ToolContext(http=http, settings=settings, approvals=reads)
    get = await registry.run("call_api", json.dumps({"url": f"{web.url}/api/data"}), ctx)
    assert get.ok and reads.asked == []
