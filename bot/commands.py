"""Running a slash command as a traced run, for Slack and the console alike."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bot.db.trace import DbTrace
from bot.runtime import Runtime
from orchestrators.llm import AgentError
from orchestrators.workflows.commands import HELP_COMMANDS, help_text, parse_command
from orchestrators.workflows.parsing import UsageError
from tools.context import ToolContext
from tools.registry import ToolError

log = logging.getLogger(__name__)


@dataclass
class CommandReply:
    """What a command produced, for Slack or the console."""

    text: str
    ok: bool = True
    ephemeral: bool = False
    workflow: str = ""
    run_id: int | None = None
    seconds: float = 0.0


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
    run = await rt.db.runs.start(
        command,
        team_id=team,
        channel_id=channel,
        user_id=user,
        model=rt.settings.openai_model if rt.llm else None,
    )
    assert run.id is not None
    ctx = rt.tool_context(DbTrace(rt.db, run.id), team=team, user=user, channel=channel)
    started = time.perf_counter()
    try:
        reply = await cmd.run(rt.agent, ctx, parsed)
    except (ToolError, AgentError) as exc:
        await rt.db.runs.finish(run.id, "failed", error=str(exc)[:2000], **_usage(ctx))
        return CommandReply(
            f"{command}: {exc}", ok=False, ephemeral=True, workflow=cmd.workflow, run_id=run.id
        )
    except Exception as exc:
        log.exception("run %s: %s failed", run.id, command)
        await rt.db.runs.finish(run.id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000], **_usage(ctx))
        return CommandReply(
            f"Sorry, `{command}` failed unexpectedly (reference: run {run.id}).",
            ok=False,
            ephemeral=True,
            workflow=cmd.workflow,
            run_id=run.id,
        )
    seconds = time.perf_counter() - started
    await rt.db.runs.finish(run.id, "ok", error="; ".join(reply.notes) or None, **_usage(ctx))
    return CommandReply(
        reply.text, ephemeral=reply.ephemeral, workflow=cmd.workflow, run_id=run.id, seconds=seconds
    )


def _usage(ctx: ToolContext) -> dict[str, int]:
    u = ctx.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "llm_calls": u.llm_calls,
    }
