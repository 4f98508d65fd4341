"""One way to run traced work: start the run, hand out its context, apply one failure policy, finish.

Conversations, slash commands and digests all go through `traced_run`, so every run row ends with
the same statuses, the same error wording and its token usage, whichever door it came in by.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.db.trace import DbTrace, StatusSink
from bot.runtime import Runtime
from orchestrators.llm import AgentError
from tools.context import Approver, ToolContext
from tools.registry import ToolError

log = logging.getLogger(__name__)

# The one catch list: failures already worded for a person (a tool, the model, Slack said no).
# Anything else is a bug: logged with its traceback and shown to the user only as a reference.
EXPECTED: tuple[type[Exception], ...] = (ToolError, AgentError, SlackApiError)
MAX_ERROR_CHARS = 2_000
INTERRUPTED = "interrupted by shutdown"


class RunFailed(Exception):
    """A traced run ended with an exception; the run row already says so."""

    def __init__(self, run_id: int, reason: str, *, expected: bool) -> None:
        super().__init__(reason)
        self.run_id = run_id
        self.reason = reason
        self.expected = expected  # one of EXPECTED: the reason can be shown as it is


@dataclass
class TracedRun:
    """The run in progress: its id, the tools' context, and the outcome to record at the end."""

    id: int
    ctx: ToolContext
    trace: DbTrace
    status: str = "ok"
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    async def flush(self) -> None:
        """Make every step so far durable: call it before showing the user what they produced."""
        await self.trace.flush()

    def finish(self, status: str = "ok", error: str | None = None, **fields: Any) -> None:
        """Set what the run row says when the block ends (without an exception)."""
        self.status, self.error, self.fields = status, error, fields


def failure_reason(exc: BaseException) -> str:
    """The error text for the run row (and, for an expected failure, for the user)."""
    if isinstance(exc, SlackApiError) and exc.response is not None:
        return f"Slack said {exc.response.get('error')}"
    if isinstance(exc, EXPECTED):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _usage(ctx: ToolContext) -> dict[str, int]:
    usage = ctx.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "llm_calls": usage.llm_calls,
    }


@asynccontextmanager
async def traced_run(
    rt: Runtime,
    trigger: str,
    *,
    team: str,
    channel: str,
    user: str,
    thread_ts: str | None = None,
    reply_thread_ts: str | None = None,
    conversation_id: int | None = None,
    on_status: StatusSink | None = None,
    approver: Callable[[int], Approver] | None = None,
) -> AsyncIterator[TracedRun]:
    """Run the block as run `trigger`; an exception ends the run and comes out as RunFailed.

    Cancellation (shutdown) marks the run interrupted and propagates unchanged. `approver` makes
    the run's approval gate from its id (the buttons name the run).
    """
    row = await rt.db.runs.start(
        trigger,
        conversation_id=conversation_id,
        team_id=team,
        channel_id=channel,
        thread_ts=thread_ts,
        user_id=user,
        model=rt.settings.openai_model if rt.llm else None,
    )
    assert row.id is not None
    trace = DbTrace(rt.db, row.id, on_status=on_status)
    ctx = rt.tool_context(
        trace,
        team=team,
        user=user,
        channel=channel,
        thread_ts=reply_thread_ts,
        approver=approver(row.id) if approver else None,
    )
    run = TracedRun(row.id, ctx, trace)

    async def finish(status: str, error: str | None, **fields: Any) -> None:
        await trace.settle()  # the steps still queued are written with the finish, in one go
        await rt.db.runs.finish(
            run.id,
            status,
            started_at=row.started_at,
            steps=trace.take(),
            error=error,
            **_usage(ctx),
            **fields,
        )

    try:
        yield run
    except asyncio.CancelledError:
        await finish("interrupted", INTERRUPTED)
        raise
    except Exception as exc:
        expected = isinstance(exc, EXPECTED)
        reason = failure_reason(exc)
        if expected:
            log.warning("run %s (%s) failed: %s", run.id, trigger, reason)
        else:
            log.exception("run %s (%s) failed", run.id, trigger)
        await finish("failed", reason[:MAX_ERROR_CHARS])
        raise RunFailed(run.id, reason, expected=expected) from exc
    await finish(run.status, run.error, **run.fields)
