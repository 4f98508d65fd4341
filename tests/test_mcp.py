"""MCP tool servers through the front door: a real stdio server built with the SDK's server side."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention
from tools.mcp_servers.mcp_config import McpConfigError, load_servers
from tools.mcp_servers.mcp_tools import model_schema

ROOT = Path(__file__).resolve().parent.parent


def servers_file(tmp_path: Path, state: Path, **overrides: dict) -> Path:
    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "tests.fakes.mcp_server", str(state / name)]

    servers = {
        "tickets": {
            "command": command("tickets"),
            "cwd": str(ROOT),
            "tools": ["lookup_ticket", "shout", "slow"],
            "mode": "read",
            "timeout": 2,
            "max_output_chars": 500,
        },
        "desk": {"command": command("desk"), "cwd": str(ROOT), "tools": ["close_ticket"], "mode": "write"},
        **overrides,
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"servers": servers}))
    return path


@pytest.fixture
async def mcp_bot(make_bot: MakeBot, slack, tmp_path) -> Bot:
    state = tmp_path / "mcp-state"
    harness = await make_bot(MCP_SERVERS=str(servers_file(tmp_path, state)), MCP_CHECK_SECONDS="0.2")
    assert await harness.rt.mcp.ready(120), "the fake MCP servers did not connect"
    harness.state = state  # type: ignore[attr-defined]
    harness.slack_response_url = slack.response_url("click")  # type: ignore[attr-defined]
    return harness


def tool_results(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_the_model_uses_an_mcp_read_tool(mcp_bot: Bot, slack, llm) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("tickets__lookup_ticket", {"ticket_id": "T-1"})]),
        Reply(content="T-1 is the printer on fire, still open."),
    )
    await mcp_bot.event(mention("<@UBOT> what is T-1?", ts="100.1"))
    await mcp_bot.idle()
    offered = llm.tool_names_sent(0)
    assert {"tickets__lookup_ticket", "tickets__shout", "tickets__slow", "desk__close_ticket"} <= set(offered)
    assert "tickets__close_ticket" not in offered and "desk__lookup_ticket" not in offered  # allow-lists
    (result,) = tool_results(llm.requests[1])
    assert result.startswith('<tool_output tool="tickets__lookup_ticket" sources="mcp:tickets">')
    assert "Printer on fire" in result and "MCP server tickets" in result
    assert "printer on fire" in str(slack.posted(channel="C1"))
    run = (await queries.runs(mcp_bot.rt.db))[-1]
    (step,) = [s for s in await mcp_bot.rt.db.runs.steps(run.id) if s.kind == "tool"]
    assert step.name == "tickets__lookup_ticket" and step.error is None and step.output_chars > 0


async def test_bad_arguments_timeouts_and_huge_output_end_in_readable_results(mcp_bot: Bot, llm) -> None:
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("tickets__lookup_ticket", {"ticket": "T-1"}),  # fails our schema check
                ToolCall("tickets__lookup_ticket", {"ticket_id": "T-404"}),  # the server's own error
                ToolCall("tickets__slow", {"seconds": 10}),  # past the 2 s timeout
                ToolCall("tickets__shout", {"times": 1000}),  # past the 500-character cap
            ]
        ),
        Reply(content="Some of that failed."),
    )
    await mcp_bot.event(mention("<@UBOT> try things", ts="101.1"))
    await mcp_bot.idle()
    bad_args, missing, slow, loud = tool_results(llm.requests[1])
    assert "invalid arguments" in bad_args and "ticket_id" in bad_args
    assert "no ticket T-404" in missing
    assert "timed out" in slow
    assert "output truncated" in loud and len(loud) < 800
    assert "<\\/tool_output" not in loud  # plain text, still inside one delimited block
    assert loud.count("</tool_output>") == 1


def approval_buttons(slack, user: str = "U1") -> dict[str, dict]:
    """The Approve / Deny buttons last shown (ephemerally) to `user`."""
    (shown,) = [
        e for e in slack.ephemerals if e["recipient"] == user and "Approve" in json.dumps(e["blocks"])
    ][-1:]
    return {
        b["text"]["text"]: b for blk in shown["blocks"] if blk["type"] == "actions" for b in blk["elements"]
    }


async def press(bot: Bot, button: dict, user: str = "U1", thread_ts: str | None = None) -> None:
    action = {
        "type": "button",
        "action_id": button["action_id"],
        "value": button["value"],
        "text": button["text"],
    }
    await bot.action(
        action, user=user, channel="C1", thread_ts=thread_ts, response_url=bot.slack_response_url
    )
    await bot.idle()


def closed(bot: Bot) -> list[str]:
    path = bot.state / "desk" / "closed.tsv"  # type: ignore[attr-defined]
    return path.read_text().splitlines() if path.exists() else []


async def test_a_write_tool_waits_for_approval_and_resumes_after_a_restart(mcp_bot: Bot, slack, llm) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("desk__close_ticket", {"ticket_id": "T-2", "comment": "fixed"})]),
        Reply(content="I have asked you to approve closing T-2."),
        Reply(content="Done: T-2 is closed."),
    )
    await mcp_bot.event(mention("<@UBOT> close T-2", ts="102.1"))
    await mcp_bot.idle()
    (result,) = tool_results(llm.requests[1])
    assert "Not run yet" in result and "<@U1>" in result
    assert closed(mcp_bot) == []  # nothing ran before an approval
    (question,) = [e for e in slack.ephemerals if "Approve" in json.dumps(e["blocks"])]
    asked = question["blocks"][0]["text"]["text"]
    assert question["recipient"] == "U1" and '"ticket_id": "T-2"' in asked and '"comment": "fixed"' in asked
    assert set(approval_buttons(slack)) == {"Approve", "Deny"}
    assert "asked you to approve" in str(slack.posted(channel="C1"))

    await mcp_bot.restart()  # the waiting run lives in the database, not in this process
    assert await mcp_bot.rt.mcp.ready(120)
    await press(mcp_bot, approval_buttons(slack)["Deny"], user="U2", thread_ts="102.1")
    assert "Only <@U1> can decide" in slack.responses[-1]["text"] and closed(mcp_bot) == []
    await press(mcp_bot, approval_buttons(slack)["Approve"], thread_ts="102.1")
    assert closed(mcp_bot) == ["T-2\tfixed"]
    continuation = llm.requests[-1]["messages"][-1]["content"]
    assert "approved `desk__close_ticket`" in continuation and "closed T-2" in continuation
    answers = [m for m in slack.posted(channel="C1") if m.get("thread_ts") == "102.1"]
    assert "Done: T-2 is closed." in str(answers[-1])
    await press(mcp_bot, approval_buttons(slack)["Approve"], thread_ts="102.1")  # a second click
    assert "already approved" in slack.responses[-1]["text"]
    assert closed(mcp_bot) == ["T-2\tfixed"]  # ran once
    assert len(llm.requests) == 3


async def test_deny_runs_nothing_and_says_so(mcp_bot: Bot, slack, llm) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("desk__close_ticket", {"ticket_id": "T-1"})]),
        Reply(content="Waiting for your approval."),
    )
    await mcp_bot.event(mention("<@UBOT> close T-1", ts="105.1"))
    await mcp_bot.idle()
    await press(mcp_bot, approval_buttons(slack)["Deny"], thread_ts="105.1")
    assert closed(mcp_bot) == [] and len(llm.requests) == 2
    said = slack.posted(channel="C1")[-1]["text"]
    assert "I did not run `desk__close_ticket`" in said and "@\u2060alice denied it" in said  # not pinged
    convo = await mcp_bot.rt.db.conversations.find("T1", "C1", "105.1")
    history = await mcp_bot.rt.db.conversations.history(convo.id)
    assert "did not run" in history[-1]["content"]  # a follow-up question knows it


async def test_a_dead_server_loses_its_tools_and_gets_them_back(mcp_bot: Bot, llm, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tools.mcp_servers.mcp_tools")
    pid = int((mcp_bot.state / "tickets" / "pid").read_text())  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(60):
        while len(mcp_bot.rt.mcp.tools()) == 4:
            await asyncio.sleep(0.05)
    assert any(
        "MCP server tickets" in r.getMessage() and "unavailable" in r.getMessage() for r in caplog.records
    )
    gone = {"tickets__lookup_ticket", "tickets__shout", "tickets__slow"}
    assert [t.name for t in mcp_bot.rt.mcp.tools()] == ["desk__close_ticket"]
    llm.script(Reply(content="Still here."))
    await mcp_bot.event(mention("<@UBOT> are you alive?", ts="103.1"))
    await mcp_bot.idle()
    assert not gone & set(llm.tool_names_sent(0))  # the dead server's tools are not offered
    assert "get_weather" in llm.tool_names_sent(0)
    assert await mcp_bot.rt.mcp.ready(120)  # the supervisor restarted it
    assert len(mcp_bot.rt.mcp.tools()) == 4


async def test_an_unreachable_server_never_blocks_the_bot(
    slack, llm, tmp_path, caplog, make_bot: MakeBot
) -> None:
    caplog.set_level(logging.WARNING, logger="tools.mcp_servers.mcp_tools")
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps({"servers": {"gone": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "s3cret"}}}})
    )
    harness = await make_bot(MCP_SERVERS=str(path))
    await harness.event(mention("<@UBOT> hello", ts="104.1"))
    await harness.idle()
    assert "OK from the fake model" in str(slack.posted(channel="C1"))
    async with asyncio.timeout(60):
        while not any("unavailable" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.05)
    assert "s3cret" not in caplog.text


def test_the_servers_file_is_checked_at_start(tmp_path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps({"servers": {"a": {"url": "http://h/mcp", "headers": {"Authorization": "${TOKEN}"}}}})
    )
    (server,) = load_servers(str(path), {"TOKEN": "Bearer t"})
    assert server.headers == {"Authorization": "Bearer t"} and server.mode == "read" and server.tools is None
    assert "s3cret" not in repr(load_servers(str(path), {"TOKEN": "s3cret"}))
    for bad, message in [
        ({"a": {"url": "http://h/mcp", "headers": {"A": "${NOPE}"}}}, "NOPE"),
        ({"a": {"command": ["x"], "url": "http://h"}}, "either command"),
        ({"a": {"command": ["x"], "mode": "delete"}}, "mode"),
        ({"a__b": {"command": ["x"]}}, "server name"),
        ({"a": {"command": "x"}}, "list of strings"),
        ({"a": {"command": ["x"], "tool": ["t"]}}, "unknown keys"),
    ]:
        path.write_text(json.dumps({"servers": bad}))
        with pytest.raises(McpConfigError, match=message):
            load_servers(str(path), {})
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="MCP_SERVERS"):
        from bot.settings import load_settings

        load_settings({"MCP_SERVERS": str(path)}, need_slack=False)


def test_mcp_schemas_are_made_safe_for_every_model_server() -> None:
    schema = model_schema(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "title": "args",
            "properties": {
                "q": {"type": "string", "title": "Q", "maxLength": 5000},
                "n": {"$ref": "#/$defs/N"},
            },
            "$defs": {"N": {"type": "integer", "title": "N", "maxLength": 10}},
        }
    )
    assert schema == {
        "type": "object",
        "properties": {"q": {"type": "string"}, "n": {"type": "integer", "maxLength": 10}},
    }
    with pytest.raises(ValueError, match="not an object"):
        model_schema({"type": "string"})


async def test_an_unanswered_write_call_expires_with_an_answer(
    slack, llm, tmp_path, make_bot: MakeBot
) -> None:
    state = tmp_path / "mcp-state"
    path = servers_file(tmp_path, state)
    harness = await make_bot(MCP_SERVERS=str(path), WRITE_APPROVAL_SECONDS="1")
    assert await harness.rt.mcp.ready(120)
    llm.script(
        Reply(tool_calls=[ToolCall("desk__close_ticket", {"ticket_id": "T-1"})]),
        Reply(content="Waiting for your approval."),
    )
    await harness.event(mention("<@UBOT> close T-1", ts="106.1"))
    await harness.idle()
    await slack.wait_for(
        lambda: "nobody approved it in time" in str(slack.posted(channel="C1")), timeout=60, what="expiry"
    )
    assert not (state / "desk" / "closed.tsv").exists() and len(llm.requests) == 2
    button = approval_buttons(slack)["Approve"]
    harness.slack_response_url = slack.response_url("late")  # type: ignore[attr-defined]
    await press(harness, button, thread_ts="106.1")  # too late: nothing runs
    assert "already expired" in slack.responses[-1]["text"]
    assert not (state / "desk" / "closed.tsv").exists()


async def test_a_streamable_http_server_gets_its_headers(make_bot: MakeBot, slack, llm, tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "s3cret-mcp-token"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.mcp_server", "--http", str(port), cwd=ROOT,
        env={**os.environ, "FAKE_MCP_TOKEN": token},
    )  # fmt: skip
    try:
        async with asyncio.timeout(120):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        path = tmp_path / "mcp.json"
        servers = {
            "web": {
                "url": url,
                "headers": {"Authorization": "Bearer ${DESK_TOKEN}"},
                "tools": ["lookup_ticket"],
            },
            "nokey": {"url": url, "headers": {"Authorization": "Bearer wrong"}},
        }
        path.write_text(json.dumps({"servers": servers}))
        harness = await make_bot(MCP_SERVERS=str(path), DESK_TOKEN=token)
        try:
            web, nokey = harness.rt.mcp.links
            async with asyncio.timeout(120):
                await web.connected.wait()
            assert [t.name for t in harness.rt.mcp.tools()] == ["web__lookup_ticket"]  # nokey: refused
            assert not nokey.connected.is_set()
            llm.script(
                Reply(tool_calls=[ToolCall("web__lookup_ticket", {"ticket_id": "T-2"})]),
                Reply(content="T-2: the VPN."),
            )
            await harness.event(mention("<@UBOT> what is T-2?", ts="107.1"))
            await harness.idle()
            (result,) = tool_results(llm.requests[1])
            assert "VPN drops every hour" in result
        finally:
            await harness.close()
    finally:
        proc.terminate()
        await proc.wait()
