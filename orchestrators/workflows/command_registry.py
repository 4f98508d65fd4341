"""The slash-command registry both front doors use: name -> parser and workflow runner.

Registering a command is one entry in `COMMANDS`; Slack and the console both read it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrators.agent.loop import Agent
from orchestrators.workflows.arguments import (
    ASK_USAGE,
    RESEARCH_USAGE,
    SUMMARIZE_USAGE,
    WEATHER_USAGE,
    SummarizeArgs,
    UsageError,
    describe_period,
    parse_place,
    parse_question,
    parse_summarize,
)
from orchestrators.workflows.base import WorkflowReply
from orchestrators.workflows.channel_summary import summarize_channel
from orchestrators.workflows.research import research
from orchestrators.workflows.weather_report import weather_report
from tools.guards.audience import may_show
from tools.read_channel import ensure_member, resolve_channel
from tools.toolkit.context import ToolContext

Runner = Callable[[Agent, ToolContext, Any], Awaitable[WorkflowReply]]


@dataclass(frozen=True)
class Command:
    workflow: str
    description: str
    usage: str
    parse: Callable[[str], Any]
    run: Runner


async def _weather(agent: Agent, ctx: ToolContext, place: str) -> WorkflowReply:
    return await weather_report(ctx, place)


async def _summarize(agent: Agent, ctx: ToolContext, args: SummarizeArgs) -> WorkflowReply:
    if args.channel is None:
        channel_id, name = await resolve_channel(ctx, ctx.channel_id or "")
    else:
        channel_id, name = await resolve_channel(ctx, args.channel.id or f"#{args.channel.name}")
    await ensure_member(ctx, channel_id, name)
    verdict = await may_show(
        ctx.slack,
        ctx.memberships,
        team=ctx.team_id,
        source=channel_id,
        place=ctx.channel_id,
        bot_user=ctx.bot_user_id,
    )
    if not verdict.allowed:  # the asker is a member: they get it, nobody else here does
        ctx.ephemeral_to = ctx.user_id
    reply = await summarize_channel(ctx, channel_id, name, time.time() - args.period.total_seconds())
    reply.text = f"*Summary of #{name}, last {describe_period(args.period)}*\n\n{reply.text}"
    if not verdict.allowed:
        reply.ephemeral = True
        reply.text += f"\n\n_Shown only to you: {verdict.reason}._"
    return reply


async def _research(agent: Agent, ctx: ToolContext, question: str) -> WorkflowReply:
    return await research(ctx, question)


async def _ask(agent: Agent, ctx: ToolContext, question: str) -> WorkflowReply:
    result = await agent.run([{"role": "user", "content": question}], ctx)
    return WorkflowReply(f"> {question}\n\n{result.text}")


COMMANDS: dict[str, Command] = {
    "/weather": Command(
        "weather_report", "Tomorrow's forecast and a short summary", WEATHER_USAGE, parse_place, _weather
    ),
    "/summarize": Command(
        "summarize_channel",
        "Recap a channel, with threads and who said what",
        SUMMARIZE_USAGE,
        parse_summarize,
        _summarize,
    ),
    "/research": Command(
        "research",
        "Search the web, read the top pages, answer with sources",
        RESEARCH_USAGE,
        lambda t: parse_question(t, RESEARCH_USAGE),
        _research,
    ),
    "/ask": Command(
        "llm_orchestrator",
        "Ask Switchboard without mentioning it",
        ASK_USAGE,
        lambda t: parse_question(t, ASK_USAGE),
        _ask,
    ),
}
HELP_COMMANDS = ("/switchboard", "/help")


def help_text() -> str:
    lines = ["*Switchboard* answers mentions, DMs and its threads with tools, and runs these commands:"]
    lines += [f"• `{name}` — {c.description}. {c.usage}" for name, c in COMMANDS.items()]
    lines.append("• `/digest` — scheduled channel summaries: `/digest help`")
    lines.append("• `/switchboard help` — this list")
    return "\n".join(lines)


@dataclass(frozen=True)
class WorkflowCall:
    """A workflow command, parsed: its registry entry and its typed arguments (what the entry's
    parser returned: a place, a question, SummarizeArgs)."""

    name: str  # "/weather"
    command: Command
    args: Any

    async def run(self, agent: Agent, ctx: ToolContext) -> WorkflowReply:
        return await self.command.run(agent, ctx, self.args)


def parse_command(command: str, text: str) -> WorkflowCall:
    """The command and its parsed arguments, or UsageError: no work starts on bad input."""
    found = COMMANDS.get(command)
    if found is None:
        raise UsageError(f"I don't know `{command}`.\n{help_text()}")
    return WorkflowCall(command, found, found.parse(text))
