"""Running a slash command as a traced run, for Slack and the console alike.

Who a run asks for approvals is the caller's: the Slack listener passes Slack's prompts, the
console and the evals pass none (so this room knows nothing of Slack)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.controls.admin_commands import SUBCOMMANDS, switchboard
from bot.runtime import Runtime
from bot.work.traced_run import RunFailed, traced_run
from orchestrators.workflows.arguments import UsageError
from orchestrators.workflows.command_registry import HELP_COMMANDS, help_text, parse_command
from tools.toolkit.context import Approvals, Approver


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


async def execute(
    rt: Runtime,
    command: str,
    text: str,
    *,
    user: str,
    channel: str,
    team: str,
    approver: Callable[[int], Approver] | None = None,
    approvals: Callable[[int], Approvals] | None = None,
) -> CommandReply:
    """Run one command as a traced run; failures become short, actionable replies. `approver` and
    `approvals` make the run's egress and write-call askers from its id (none: nobody is asked)."""
    sub, _, rest = text.strip().partition(" ")
    if command == "/switchboard" and sub.lower() in SUBCOMMANDS:
        return CommandReply(
            await switchboard(rt, sub.lower(), rest, user=user, channel=channel, team=team), ephemeral=True
        )
    if command in HELP_COMMANDS:
        return CommandReply(help_text())
    try:
        cmd, parsed = parse_command(command, text)
    except UsageError as exc:
        return CommandReply(str(exc), ok=False)
    here = await rt.db.channel_settings.effective(team, channel)
    started = time.perf_counter()
    try:
        async with traced_run(
            rt,
            command,
            team=team,
            channel=channel,
            user=user,
            approver=approver,
            approvals=approvals,
            model=here.model,
            caps=here,
        ) as run:
            if refusal := run.allowance.refusal:
                run.finish("refused", error=refusal)
                return CommandReply(refusal, ok=False, workflow=cmd.workflow)
            agent = rt.agent.using(
                model=here.model,
                registry=await rt.tools(here.tools.allows),
                instructions=here.instructions,
                token_budget=run.allowance.remaining,
            )
            reply = await cmd.run(agent, run.ctx, parsed)
            run.finish("ok", error="; ".join(reply.notes) or None)
    except RunFailed as failed:
        text = (
            f"{command}: {failed.reason}"
            if failed.expected
            else f"Sorry, `{command}` failed unexpectedly (reference: run {failed.run_id})."
        )
        return CommandReply(text, ok=False, workflow=cmd.workflow, run_id=failed.run_id)
    seconds = time.perf_counter() - started
    return CommandReply(
        reply.text,
        ephemeral=reply.ephemeral,
        workflow=cmd.workflow,
        run_id=run.id,
        seconds=seconds,
        sources=tuple(run.ctx.flow.private_sources),
    )
