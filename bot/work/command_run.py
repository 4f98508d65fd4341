"""Slash commands, parsed once into typed values and run as traced runs, for Slack and the
console alike.

Who a run asks for approvals is the caller's: the Slack listener passes Slack's prompts, the
console and the evals pass none (so this room knows nothing of Slack)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.controls.admin_commands import SUBCOMMANDS, switchboard
from bot.runtime import Runtime
from bot.work.traced_run import NOBODY, Askers, RunFailed, TracedRun, traced_run
from orchestrators.workflows.arguments import UsageError
from orchestrators.workflows.base import WorkflowReply
from orchestrators.workflows.command_registry import HELP_COMMANDS, WorkflowCall, help_text, parse_command


@dataclass(frozen=True)
class AdminCall:
    """`/switchboard config ...` or `/switchboard usage ...`: answered to the asker only."""

    sub: str  # one of bot.controls.admin_commands.SUBCOMMANDS
    text: str  # the rest, parsed by the subcommand


@dataclass(frozen=True)
class HelpCall:
    """`/help`, or `/switchboard` with anything that is not a subcommand."""


@dataclass(frozen=True)
class ThreadSummaryCall:
    """`/summarize` with no arguments inside a thread (Slack only): that thread, there."""


SlashCommand = AdminCall | HelpCall | ThreadSummaryCall | WorkflowCall


def parse_slash(command: str, text: str, *, in_thread: bool = False) -> SlashCommand:
    """What a slash command asks for, its arguments parsed; UsageError (worded for the person)
    on bad input, so no work starts. Both front doors decide with this one parse."""
    sub, _, rest = text.strip().partition(" ")
    if command == "/switchboard" and sub.lower() in SUBCOMMANDS:
        return AdminCall(sub.lower(), rest)
    if command == "/summarize" and in_thread and not text.strip():
        return ThreadSummaryCall()
    if command in HELP_COMMANDS:
        return HelpCall()
    return parse_command(command, text)


@dataclass
class CommandReply:
    """What a command produced, for Slack or the console; a reply that is not `ok` is private."""

    text: str
    ok: bool = True
    ephemeral: bool = False  # shown only to the person who asked (the place has other readers)
    workflow: str = ""
    run_id: int | None = None
    seconds: float = 0.0
    sources: tuple[str, ...] = ()  # non-public places its run read: kept with it in any history
    call: SlashCommand | None = None  # what was asked, parsed (None when it did not parse)


async def execute_text(
    rt: Runtime,
    command: str,
    text: str,
    *,
    user: str,
    channel: str,
    team: str,
    askers: Askers = NOBODY,
) -> CommandReply:
    """Parse and run one command as typed; bad input is a private usage reply. `askers`: whom
    its run asks for egress and write-call approvals (NOBODY by default)."""
    try:
        call = parse_slash(command, text)
    except UsageError as exc:
        return CommandReply(exc.user_message, ok=False)
    return await execute(rt, call, user=user, channel=channel, team=team, askers=askers)


async def execute(
    rt: Runtime,
    call: SlashCommand,
    *,
    user: str,
    channel: str,
    team: str,
    askers: Askers = NOBODY,
) -> CommandReply:
    """Run one parsed command; a workflow runs as a traced run, its failures short replies."""
    if isinstance(call, AdminCall):
        text = await switchboard(rt, call.sub, call.text, user=user, channel=channel, team=team)
        return CommandReply(text, ephemeral=True, call=call)
    if isinstance(call, WorkflowCall):
        return await run_workflow(rt, call, user=user, channel=channel, team=team, askers=askers)
    return CommandReply(help_text(), call=call)  # help; a thread summary is Slack's own (listeners)


async def run_workflow(
    rt: Runtime,
    call: WorkflowCall,
    *,
    user: str,
    channel: str,
    team: str,
    askers: Askers = NOBODY,
) -> CommandReply:
    """The workflow as a traced run with the place's model, tools, instructions and caps."""
    here = await rt.db.channel_settings.effective(team, channel)
    workflow = call.command.workflow
    started = time.perf_counter()
    try:
        async with traced_run(
            rt,
            call.name,
            team=team,
            channel=channel,
            user=user,
            askers=askers,
            model=here.model,
            caps=here,
        ) as run:
            if refusal := run.allowance.refusal:
                run.finish("refused", error=refusal)
                return CommandReply(refusal, ok=False, workflow=workflow, call=call)
            agent = rt.agent.using(
                model=here.model,
                registry=await rt.tools(here.tools.allows),
                instructions=here.instructions,
                token_budget=run.allowance.remaining,
            )
            reply = await call.run(agent, run.ctx)
            run.finish("ok", error="; ".join(reply.notes) or None)
    except RunFailed as failed:
        return CommandReply(
            failure_text(call.name, failed), ok=False, workflow=workflow, run_id=failed.run_id
        )
    return _replied(call, reply, run, time.perf_counter() - started)


def failure_text(command: str, failed: RunFailed) -> str:
    """An expected failure says what it was; anything else, that it failed and where to look."""
    if failed.expected:
        return f"{command}: {failed.reason}"
    return f"Sorry, `{command}` failed unexpectedly (reference: run {failed.run_id})."


def _replied(call: WorkflowCall, reply: WorkflowReply, run: TracedRun, seconds: float) -> CommandReply:
    return CommandReply(
        reply.text,
        ephemeral=reply.ephemeral,
        workflow=call.command.workflow,
        run_id=run.id,
        seconds=seconds,
        sources=tuple(run.ctx.flow.private_sources),
        call=call,
    )
