"""Issue 23 (7): ready means ready. /readyz waits (at most MCP_READY_SECONDS) for each MCP server's
first connect and reports every server's state; a question asked in that window waits for the
tools instead of being answered without them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention
from tests.test_mcp_schemas import ROOT, calls, published, published_server, servers_file


async def readyz(bot: Bot) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{bot.url}/readyz") as r:
        return r.status, json.loads(await r.text())


async def readyz_until(bot: Bot, status: int, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            code, body = await readyz(bot)
            if code == status:
                return body
            await asyncio.sleep(0.05)


async def gated_bot(make_bot: MakeBot, tmp_path: Path, **env: str) -> tuple[Bot, Path]:
    """A bot with one MCP server (GitHub's published tools) that answers tools/list only once
    the returned gate file exists: a server that is slow to start, for as long as the test wants."""
    gate = tmp_path / "gate"
    servers = {"github": published_server(tmp_path, "github", published("github"), "--gate", str(gate))}
    return await make_bot(MCP_SERVERS=servers_file(tmp_path, servers), **env), gate


async def test_readyz_is_503_while_a_server_connects_then_200_when_it_has(
    slack,
    llm,
    tmp_path,
    make_bot: MakeBot,
) -> None:
    bot, gate = await gated_bot(make_bot, tmp_path, MCP_READY_SECONDS="120")
    try:
        code, body = await readyz(bot)
        assert code == 503 and body["failing"] == ["mcp"] and "github" in body["mcp"]
        assert body["mcp_servers"] == {"github": {"state": "connecting", "tools": 0}}
        gate.touch()
        body = await readyz_until(bot, 200)
        assert body["ok"] is True and body["mcp_servers"] == {"github": {"state": "connected", "tools": 3}}
    finally:
        await bot.close()


async def test_a_question_before_the_first_connect_waits_and_uses_the_mcp_tool(
    slack,
    llm,
    tmp_path,
    make_bot: MakeBot,
) -> None:
    bot, gate = await gated_bot(make_bot, tmp_path, MCP_READY_SECONDS="120")
    try:
        issue = {"owner": "acme", "repo": "bot", "title": "Printer on fire"}
        llm.script(
            Reply(tool_calls=[ToolCall("github__create_issue", issue)]),
            Reply(content="Filed: Printer on fire."),
        )
        code, _ = await bot.event(mention("<@UBOT> file an issue: printer on fire", ts="400.1"))
        assert code == 200  # acked at once; the answer waits, not the ack
        await slack.wait_for(lambda: slack.posted(channel="C1"), what="the placeholder")
        assert llm.requests == [] and bot.rt.mcp.waiting() == ["github"]  # still waiting for the tools
        gate.touch()
        await bot.idle()
        assert "github__create_issue" in llm.tool_names_sent(0)
        assert calls(tmp_path, "github") == [{"name": "create_issue", "arguments": issue}]
        assert "Filed: Printer on fire." in str(slack.posted(channel="C1"))
    finally:
        await bot.close()


async def test_a_server_that_is_down_is_reported_down_without_holding_readiness(
    slack, llm, tmp_path, make_bot: MakeBot
) -> None:
    servers = {
        "broken": {"command": [sys.executable, "-c", "raise SystemExit(3)"], "cwd": str(ROOT), "timeout": 60}
    }
    bot = await make_bot(MCP_SERVERS=servers_file(tmp_path, servers), MCP_READY_SECONDS="120")
    body = await readyz_until(bot, 200)  # after its first failure, long before 120 s
    broken = body["mcp_servers"]["broken"]
    assert broken["state"] == "down" and broken["tools"] == 0 and broken["reason"]
    llm.script(Reply(content="Answered without it."))
    await bot.event(mention("<@UBOT> hello", ts="401.1"))
    await bot.idle()
    assert "Answered without it." in str(slack.posted(channel="C1"))


async def test_readiness_stops_waiting_after_mcp_ready_seconds(
    slack, llm, tmp_path, make_bot: MakeBot
) -> None:
    bot, _gate = await gated_bot(make_bot, tmp_path, MCP_READY_SECONDS="0.5")
    try:
        body = await readyz_until(bot, 200)
        assert body["mcp_servers"] == {"github": {"state": "connecting", "tools": 0}}  # told as it is
        llm.script(Reply(content="Answered without GitHub."))
        await bot.event(mention("<@UBOT> hello", ts="402.1"))
        await bot.idle()
        assert "Answered without GitHub." in str(slack.posted(channel="C1"))
        assert not any(name.startswith("github__") for name in llm.tool_names_sent(0))
    finally:
        await bot.close()
