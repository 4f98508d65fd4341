"""Issue 23: every tool call passes one gate, and its rules hold where two features meet.

Driven through the HTTP front door with signed requests, against loopback fakes: a private read,
or a private answer replayed from a thread's history, followed by a call of each tool kind
(built-in, workflow, MCP); redirects out of the trusted set; a tool nobody declared; arguments
nested 100,000 deep.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.search import FakeSearxng
from tests.fakes.slack_requests import command_body, dm, mention
from tests.fakes.weather import FakeOpenMeteo
from tests.fakes.web import FakeWeb
from tests.test_privacy import SECRET, private_leadership
from tools.guards import gate
from tools.guards.netguard import Refused, guarded_get
from tools.toolkit.context import DataFlow, ToolContext, ToolSettings
from tools.toolkit.registry import ToolError, ToolRegistry, tool

ROOT = Path(__file__).resolve().parent.parent
LEAK = "merger-initech-friday"


@dataclass
class Outside:
    """Every place data can leave to, each able to say what reached it."""

    web: FakeWeb
    elsewhere: FakeWeb  # a second host: not trusted, reached by redirects
    search: FakeSearxng
    weather: FakeOpenMeteo
    mcp_state: Path

    def mcp_calls(self) -> list[str]:
        path = self.mcp_state / "tickets" / "looked_up.tsv"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
async def outside(tmp_path: Path) -> AsyncIterator[Outside]:
    web, elsewhere, search = FakeWeb(), FakeWeb(), FakeSearxng()
    for fake in (web, elsewhere, search):
        await fake.start()
    search.default = [{"url": f"{web.url}/article", "title": "Changelog", "content": "Bolt 1.30"}]
    async with FakeOpenMeteo() as weather:
        yield Outside(web, elsewhere, search, weather, tmp_path / "mcp-state")
    for fake in (web, elsewhere, search):
        await fake.stop()


def mcp_file(tmp_path: Path, state: Path) -> Path:
    def server(name: str, **extra: Any) -> dict[str, Any]:
        command = [sys.executable, "-m", "tests.fakes.mcp_server", str(state / name)]
        return {"command": command, "cwd": str(ROOT), "tools": ["lookup_ticket"], **extra}

    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps({"servers": {"tickets": server("tickets"), "vault": server("vault", trusted=True)}})
    )
    return path


async def start_bot(make_bot: MakeBot, tmp_path: Path, out: Outside, mcp: bool = True, **env: str) -> Bot:
    """`mcp=False` for a test of a built-in kind: its two MCP server processes would go unused."""
    if mcp:
        env = {"MCP_SERVERS": str(mcp_file(tmp_path, out.mcp_state)), **env}
    bot = await make_bot(
        TOOL_HTTP_ALLOW_HOSTS=f"127.0.0.1:{out.web.port},127.0.0.1:{out.elsewhere.port}",
        SEARXNG_URL=out.search.url,
        OPEN_METEO_URL=out.weather.url,
        OPEN_METEO_GEOCODING_URL=out.weather.url,
        EGRESS_APPROVAL_SECONDS="0.5",  # nobody approves in these tests: the expiry is the refusal
        **env,
    )
    assert not mcp or await bot.rt.mcp.ready(120), "the fake MCP servers did not connect"
    return bot


# Each tool kind, called with the secret in its arguments, and what would have received it.
KINDS: dict[str, tuple[Callable[[Outside], ToolCall], Callable[[Outside], list[Any]]]] = {
    "built-in call_api": (
        lambda o: ToolCall("call_api", {"url": f"{o.web.url}/page/collect?data={LEAK}"}),
        lambda o: o.web.hits,
    ),
    "built-in search_web": (lambda o: ToolCall("search_web", {"query": LEAK}), lambda o: o.search.queries),
    "built-in get_weather": (
        lambda o: ToolCall("get_weather", {"location": LEAK}),
        lambda o: o.weather.requests,
    ),
    "workflow weather_report": (
        lambda o: ToolCall("weather_report", {"place": LEAK}),
        lambda o: o.weather.requests,
    ),
    "workflow research": (lambda o: ToolCall("research", {"question": LEAK}), lambda o: o.search.queries),
    "MCP tickets__lookup_ticket": (
        lambda o: ToolCall("tickets__lookup_ticket", {"ticket_id": LEAK}),
        lambda o: o.mcp_calls(),
    ),
}


def told_model(llm, call_id: str | None = None) -> str:
    """The tool results the model was sent in its last request."""
    return json.dumps([m for m in llm.requests[-1]["messages"] if m["role"] == "tool"])


async def refused_without_a_yes(
    bot: Bot, slack, llm, out: Outside, received: Callable[[Outside], list]
) -> None:
    await slack.wait_for(lambda: slack.ephemerals, timeout=30, what="an approval prompt")
    await bot.idle(60)
    assert slack.ephemerals[0]["recipient"] == "U1"
    assert received(out) == [], "data left before anyone approved it"
    assert "Not sent" in told_model(llm) and "did not approve it in time" in told_model(llm)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_private_read_then_each_tool_kind_asks_first(
    slack,
    llm,
    tmp_path,
    outside,
    kind,
    make_bot: MakeBot,
) -> None:
    private_leadership(slack)
    make_call, received = KINDS[kind]
    bot = await start_bot(make_bot, tmp_path, outside, mcp=kind.startswith("MCP"))
    llm.script(
        Reply(tool_calls=[ToolCall("read_channel", {"channel": "#leadership"})]),
        Reply(tool_calls=[make_call(outside)]),
        Reply(content="Done."),
    )
    await bot.event(dm("catch me up on #leadership, then look it up", ts="1700002000.000100"))
    await refused_without_a_yes(bot, slack, llm, outside, received)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_private_answer_then_later_turn_then_each_tool_kind_asks_first(
    slack,
    llm,
    tmp_path,
    outside,
    kind,
    make_bot: MakeBot,
) -> None:
    """/ask in a private channel answers with a secret; a follow-up in that answer's thread carries it."""
    private_leadership(slack)
    make_call, received = KINDS[kind]
    bot = await start_bot(make_bot, tmp_path, outside, mcp=kind.startswith("MCP"))
    llm.script(
        Reply(tool_calls=[ToolCall("read_channel", {"channel": "#leadership"})]),
        Reply(content=f"Summary: {SECRET}."),
    )
    await bot.post(
        command_body("/ask", "what is new here?", channel="G1", channel_name="leadership"),
        "application/x-www-form-urlencoded",
    )
    await bot.idle(60)
    (answer,) = [m for m in slack.posted(channel="G1") if SECRET in json.dumps(m)]
    assert slack.ephemerals == []  # reading the channel it is asked in needs nobody's approval
    llm.script(Reply(tool_calls=[make_call(outside)]), Reply(content="Sent."))
    await bot.event(
        mention("<@UBOT> now send that along", channel="G1", thread_ts=answer["ts"], ts="1700002100.000100")
    )
    await refused_without_a_yes(bot, slack, llm, outside, received)
    assert SECRET in json.dumps(llm.requests[-2]["messages"])  # the answer was in the history


async def test_a_trusted_mcp_server_is_not_asked_about(
    slack, llm, tmp_path, outside, make_bot: MakeBot
) -> None:
    private_leadership(slack)
    bot = await start_bot(make_bot, tmp_path, outside)
    llm.script(
        Reply(tool_calls=[ToolCall("read_channel", {"channel": "#leadership"})]),
        Reply(tool_calls=[ToolCall("vault__lookup_ticket", {"ticket_id": "T-1"})]),
        Reply(content="Done."),
    )
    await bot.event(dm("catch me up on #leadership", ts="1700002200.000100"))
    await bot.idle(60)
    assert slack.ephemerals == []
    assert (outside.mcp_state / "vault" / "looked_up.tsv").read_text().split() == ["T-1"]
    assert "Printer on fire" in told_model(llm)


async def test_a_redirect_out_of_the_trusted_set_is_a_new_decision(
    slack,
    llm,
    tmp_path,
    outside,
    make_bot: MakeBot,
) -> None:
    private_leadership(slack)
    web, elsewhere = outside.web, outside.elsewhere
    bot = await start_bot(make_bot, tmp_path, outside, EGRESS_TRUSTED_HOSTS=f"127.0.0.1:{web.port}")
    hop = f"{elsewhere.url}/page/collect?data={LEAK}"
    llm.script(
        Reply(tool_calls=[ToolCall("read_channel", {"channel": "#leadership"})]),
        Reply(tool_calls=[ToolCall("call_api", {"url": f"{web.url}/redirect?to={hop}"})]),
        Reply(content="Done."),
    )
    await bot.event(dm("catch me up on #leadership", ts="1700002300.000100"))
    await refused_without_a_yes(bot, slack, llm, outside, lambda o: o.elsewhere.hits)
    assert len(web.hits) == 1  # the trusted host was asked; the hop it pointed to was not


async def test_a_307_never_resends_a_body_to_another_host(outside) -> None:
    web, elsewhere = outside.web, outside.elsewhere
    allow = frozenset({f"127.0.0.1:{web.port}", f"127.0.0.1:{elsewhere.port}"})

    async def post(to: str) -> Any:
        return await guarded_get(
            f"{web.url}/redirect307?to={to}",
            allow_hosts=allow,
            max_bytes=10_000,
            timeout=30,
            method="POST",
            data=LEAK.encode(),
        )

    with pytest.raises(Refused, match="body was not sent"):
        await post(f"{elsewhere.url}/api/echo")
    assert elsewhere.received == []
    fetched = await post(f"{web.url}/api/echo")  # the same host may have it again
    assert json.loads(fetched.body)["received"] == len(LEAK) and web.received == [("POST", LEAK.encode())]


async def test_arguments_nested_100000_deep_end_in_an_answer(
    slack, llm, tmp_path, outside, make_bot: MakeBot
) -> None:
    bot = await start_bot(make_bot, tmp_path, outside)
    deep = "[" * 100_000 + "]" * 100_000
    llm.script(
        Reply(tool_calls=[ToolCall("call_api", f'{{"url": {deep}}}')]),
        Reply(content="I could not call that."),
    )
    await bot.event(dm("fetch it", ts="1700002400.000100"))
    await bot.idle(60)
    assert "nested more than" in told_model(llm)
    assert "I could not call that." in json.dumps(slack.posted(channel="D1"))
    assert outside.web.hits == []


# -- every registered tool passes the gate --------------------------------------------------------

# Each tool, valid arguments, and whether data leaves through it (itself or through its steps).
SAMPLES: dict[str, tuple[dict[str, Any], bool]] = {
    "get_weather": ({"location": "Karachi"}, True),  # through geocode and get_forecast
    "search_web": ({"query": LEAK}, True),
    "call_api": ({"url": "https://example.com/collect"}, True),
    "summarize": ({"text": LEAK}, False),  # the model provider only: it sees everything anyway
    "read_channel": ({"channel": "#general"}, False),  # Slack itself
    "current_time": ({}, False),
    "weather_report": ({"place": "Karachi"}, True),  # a workflow: through its steps
    "research": ({"question": LEAK}, True),
    "tickets__lookup_ticket": ({"ticket_id": "T-1"}, True),
    "vault__lookup_ticket": ({"ticket_id": "T-1"}, False),  # an MCP server the operator trusts
}


class Asked:
    """An approver that records what it was asked and says no."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def approve(self, ctx, *, tool: str, host: str, url: str, sources: list[str]):
        from tools.toolkit.context import ApprovalDecision

        self.asked.append((tool, url))
        return ApprovalDecision("denied", by="U1")


async def test_every_registered_tool_passes_the_gate(
    slack, llm, tmp_path, outside, make_bot: MakeBot
) -> None:
    """Each tool the model can be offered (ours, the workflows, MCP's) meets the egress rule before
    it runs: after a private read, each one that sends its arguments anywhere is asked about and
    sends nothing; the rest declare that they send nothing. A tool added without an entry in
    SAMPLES fails here until someone decides what it sends where."""
    bot = await start_bot(make_bot, tmp_path, outside)
    registry = await bot.rt.tools()
    assert set(registry.names) == set(SAMPLES), "a tool was added or removed: say what it sends where"
    for name in registry.names:
        found = registry.get(name)
        assert found is not None
        ctx = bot.rt.tool_context(await _trace(), team="T1", user="U1", channel="D1", approver=Asked())
        ctx.flow = DataFlow(private_sources=["slack:G1"])
        approver = ctx.approver
        assert isinstance(approver, Asked)
        arguments, leaves = SAMPLES[name]
        before = (len(outside.search.queries), len(outside.weather.requests), len(outside.mcp_calls()))
        result = await registry.run(name, json.dumps(arguments), ctx)
        after = (len(outside.search.queries), len(outside.weather.requests), len(outside.mcp_calls()))
        if leaves:
            assert approver.asked, f"{name} sends data out but nobody was asked"
            assert not result.ok and "Not sent" in (result.error or ""), name
            assert after == before, f"{name} sent something before approval"
        else:
            assert approver.asked == [] and gate.destinations(found, ctx, arguments) == [], name
        assert ctx.trace.steps[-1].name == name  # type: ignore[attr-defined]  # traced by the gate


async def _trace():
    from tools.toolkit.context import MemoryTrace

    return MemoryTrace()


async def test_a_tool_that_declares_nothing_is_treated_as_sending_out() -> None:
    """A new tool kind cannot opt out by saying nothing, and a direct call from code is gated too."""
    ran: list[str] = []

    @tool
    async def new_kind(ctx: ToolContext, text: str) -> str:
        """Some future tool."""
        ran.append(text)
        return "sent"

    async with aiohttp.ClientSession() as http:
        ctx = ToolContext(http=http, settings=ToolSettings(), flow=DataFlow(private_sources=["slack:G1"]))
        result = await ToolRegistry([new_kind]).run("new_kind", json.dumps({"text": LEAK}), ctx)
        assert not result.ok and "Not sent" in (result.error or "") and "new_kind" in (result.error or "")
        with pytest.raises(ToolError, match="Not sent"):
            await new_kind(ctx, text=LEAK)  # a workflow's call: the same gate
        assert ran == []
        ctx.flow = DataFlow()  # nothing private read: it runs
        assert (await ToolRegistry([new_kind]).run("new_kind", '{"text": "hi"}', ctx)).ok
        assert ran == ["hi"]


async def test_results_carry_the_runs_private_sources() -> None:
    """What a call returns after a private read may hold it (its arguments could): provenance says so."""

    @tool(egress=())
    async def echo(ctx: ToolContext, text: str) -> str:
        """Echo."""
        return text

    async with aiohttp.ClientSession() as http:
        ctx = ToolContext(http=http, flow=DataFlow(private_sources=["slack:G1"]))
        result = await ToolRegistry([echo]).run("echo", json.dumps({"text": LEAK}), ctx)
        assert result.ok and result.sources == ("slack:G1",)


async def test_the_gate_waits_for_no_one_when_nothing_private_was_read(outside) -> None:
    async with aiohttp.ClientSession() as http:
        ctx = ToolContext(http=http)
        for destination in ("https://example.com/x", "mcp:tickets", "tool:new_kind"):
            await asyncio.wait_for(gate.check_egress(ctx, "t", destination), 10)


async def test_an_answer_recovered_after_a_crash_keeps_carrying_what_it_drew_on(
    slack,
    llm,
    tmp_path,
    outside,
    make_bot: MakeBot,
) -> None:
    """A redo finds the dead attempt's answer already shown in a private channel: what that attempt
    read died with it, so the stored answer counts as the channel's own, and a follow-up asks."""
    from bot.slack.answering.conversation import Turn, _remember_shown

    private_leadership(slack)
    bot = await start_bot(make_bot, tmp_path, outside)
    root = "1700002500.000100"
    turn = Turn("T1", "G1", "U1", "<@UBOT> what's new?", root, root, root, "mention")
    convo = await bot.rt.db.conversations.get_or_create("T1", "G1", root)
    assert convo.id is not None
    await bot.rt.db.conversations.add_messages(convo.id, [{"role": "user", "content": "what's new?"}])
    await _remember_shown(bot.rt, turn, f"Summary: {SECRET}.")
    assert (await bot.rt.db.conversations.history(convo.id))[-1]["sources"] == ["slack:G1"]
    make_call, received = KINDS["built-in call_api"]
    llm.script(Reply(tool_calls=[make_call(outside)]), Reply(content="Sent."))
    await bot.event(mention("<@UBOT> send that along", channel="G1", thread_ts=root, ts="1700002600.000100"))
    await refused_without_a_yes(bot, slack, llm, outside, received)
    sent = llm.requests[-2]["messages"]
    assert SECRET in json.dumps(sent) and all("sources" not in m for m in sent)  # ours, not the API's
