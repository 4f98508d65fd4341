"""Slash commands -> code workflows. Parse and ack at once; run and post in a tracked task."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.parsing import (
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
from bot.render import post_answer
from bot.runtime import Runtime
from bot.trace import DbTrace
from orchestrators.llm import AgentError
from orchestrators.workflows import WorkflowReply, research, summarize_channel, weather_report
from tools.context import ToolContext
from tools.read_channel import ensure_member, resolve_channel
from tools.registry import ToolError

log = logging.getLogger(__name__)

Runner = Callable[[Runtime, ToolContext, Any], Awaitable[WorkflowReply]]


@dataclass(frozen=True)
class Command:
    workflow: str
    description: str
    usage: str
    parse: Callable[[str], Any]
    run: Runner


@dataclass
class CommandReply:
    """What a command produced, for Slack or the console."""

    text: str
    ok: bool = True
    ephemeral: bool = False
    workflow: str = ""
    run_id: int | None = None
    seconds: float = 0.0


async def _weather(rt: Runtime, ctx: ToolContext, place: str) -> WorkflowReply:
    return await weather_report(ctx, place)


async def _summarize(rt: Runtime, ctx: ToolContext, args: SummarizeArgs) -> WorkflowReply:
    if args.channel is None:
        channel_id, name = await resolve_channel(ctx, ctx.channel_id or "")
    else:
        channel_id, name = await resolve_channel(ctx, args.channel.id or f"#{args.channel.name}")
    await ensure_member(ctx, channel_id, name)
    reply = await summarize_channel(ctx, channel_id, name, time.time() - args.period.total_seconds())
    reply.text = f"*Summary of #{name}, last {describe_period(args.period)}*\n\n{reply.text}"
    return reply


async def _research(rt: Runtime, ctx: ToolContext, question: str) -> WorkflowReply:
    return await research(ctx, question)


async def _ask(rt: Runtime, ctx: ToolContext, question: str) -> WorkflowReply:
    result = await rt.agent.run([{"role": "user", "content": question}], ctx)
    return WorkflowReply(f"> {question}\n\n{result.text}")


def _no_args(text: str) -> None:
    if text.strip() and text.strip().lower() not in ("help", "?"):
        raise UsageError(help_text())


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


def parse_command(command: str, text: str) -> tuple[Command, Any]:
    """The command and its parsed arguments, or UsageError: no work starts on bad input."""
    found = COMMANDS.get(command)
    if found is None:
        raise UsageError(f"I don't know `{command}`.\n{help_text()}")
    return found, found.parse(text)


async def execute(
    rt: Runtime, command: str, text: str, *, user: str, channel: str, team: str
) -> CommandReply:
    """Run one command as a traced run; failures become short, actionable replies."""
    if command in HELP_COMMANDS:
        return CommandReply(help_text(), ephemeral=True)
    try:
        cmd, parsed = parse_command(command, text)
    except UsageError as exc:
        return CommandReply(str(exc), ok=False, ephemeral=True)
    run = await rt.store.start_run(
        command,
        team_id=team,
        channel_id=channel,
        user_id=user,
        model=rt.settings.openai_model if rt.llm else None,
    )
    assert run.id is not None
    ctx = rt.tool_context(DbTrace(rt.store, run.id), team=team, user=user, channel=channel)
    started = time.perf_counter()
    try:
        reply = await cmd.run(rt, ctx, parsed)
    except (ToolError, AgentError) as exc:
        await rt.store.finish_run(run.id, "failed", error=str(exc)[:2000], **_usage(ctx))
        return CommandReply(
            f"{command}: {exc}", ok=False, ephemeral=True, workflow=cmd.workflow, run_id=run.id
        )
    except Exception as exc:
        log.exception("run %s: %s failed", run.id, command)
        await rt.store.finish_run(
            run.id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000], **_usage(ctx)
        )
        return CommandReply(
            f"Sorry, `{command}` failed unexpectedly (reference: run {run.id}).",
            ok=False,
            ephemeral=True,
            workflow=cmd.workflow,
            run_id=run.id,
        )
    seconds = time.perf_counter() - started
    await rt.store.finish_run(run.id, "ok", error="; ".join(reply.notes) or None, **_usage(ctx))
    return CommandReply(reply.text, workflow=cmd.workflow, run_id=run.id, seconds=seconds)


def _usage(ctx: ToolContext) -> dict[str, int]:
    u = ctx.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "llm_calls": u.llm_calls,
    }


def footer(command: str, reply: CommandReply) -> dict[str, Any]:
    text = f"`{command}` · {reply.workflow} · {reply.seconds:.1f} s · run {reply.run_id}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def register(app: AsyncApp, rt: Runtime) -> None:
    async def run_and_post(body: dict[str, Any], respond: Any) -> None:
        command, channel = body["command"], body["channel_id"]
        reply = await execute(
            rt,
            command,
            body.get("text", ""),
            user=body["user_id"],
            channel=channel,
            team=body.get("team_id", ""),
        )
        if not reply.ok:
            await respond(response_type="ephemeral", text=reply.text, replace_original=False)
            return
        try:
            stamps = await post_answer(rt.slack, channel, None, reply.text, [footer(command, reply)])
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response else str(exc)
            log.warning("run %s: could not post in %s: %s", reply.run_id, channel, error)
            await respond(
                response_type="ephemeral",
                replace_original=False,
                text=f"{reply.text}\n\n_(I couldn't post this in the channel: {error}. Invite me with "
                "`/invite @Switchboard` to share results here.)_",
            )
            return
        if command == "/ask" and reply.run_id is not None:
            await _remember_ask(rt, body, stamps[0], reply)

    async def on_command(ack: Any, body: dict[str, Any], respond: Any) -> None:
        command = body["command"]
        if command in HELP_COMMANDS:
            await ack(response_type="ephemeral", text=help_text())
            return
        try:
            cmd, _ = parse_command(command, body.get("text", ""))
        except UsageError as exc:
            await ack(response_type="ephemeral", text=str(exc))
            return
        await ack(response_type="ephemeral", text=f"Working on it… (`{cmd.workflow}`)")
        rt.tasks.spawn(run_and_post(body, respond), name=f"{command} {body.get('trigger_id')}")

    for name in [*COMMANDS, *HELP_COMMANDS]:
        app.command(name)(on_command)


async def _remember_ask(rt: Runtime, body: dict[str, Any], answer_ts: str, reply: CommandReply) -> None:
    """A reply in the thread of an /ask answer continues that conversation."""
    convo = await rt.store.get_or_create_conversation(body.get("team_id", ""), body["channel_id"], answer_ts)
    assert convo.id is not None
    question = parse_question(body.get("text", ""), ASK_USAGE)
    await rt.store.add_messages(
        convo.id,
        [{"role": "user", "content": question}, {"role": "assistant", "content": reply.text}],
        run_id=reply.run_id,
    )
