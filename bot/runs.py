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

from bot import budget
from bot.budget import Allowance
from bot.channel_config import Effective
from bot.db.engine import database_unavailable
from bot.db.runs import run_values
from bot.db.trace import DbTrace, StatusSink
from bot.logging_setup import message_text
from bot.runtime import Runtime
from bot.work import JobLost
from orchestrators.llm import AgentError
from tools.context import ApprovalDecision, Approvals, Approver, ToolContext
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
    """The run in progress: its id, the tools' context, and the outcome to record at the end.

    The run row is inserted while the block's first model call is under way, so `id` is known
    after `flush()` (or `ready()`), and always after the block.
    """

    ctx: ToolContext
    trace: DbTrace
    inserted: asyncio.Task[int]
    allowance: Allowance = field(default_factory=Allowance)  # refusal set: ask no model
    status: str = "ok"
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> int:
        if not self.inserted.done():
            raise RuntimeError("the run row is still being written: await run.ready() first")
        return self.inserted.result()

    async def ready(self) -> int:
        """The run's id, once its row is written (raises what the insert raised)."""
        return await asyncio.shield(self.inserted)

    async def flush(self) -> None:
        """Make the run and every step so far durable: call it before showing the user their result."""
        await self.ready()
        await self.trace.flush()

    def finish(self, status: str = "ok", error: str | None = None, **fields: Any) -> None:
        """Set what the run row says when the block ends (without an exception)."""
        self.status, self.error, self.fields = status, error, fields


class _ApproverOnceInserted:
    """The run's approver, made when first asked (its buttons name the run, so the row must exist)."""

    def __init__(self, make: Callable[[int], Approver], inserted: asyncio.Task[int]) -> None:
        self._make, self._inserted = make, inserted
        self._made: Approver | None = None

    async def approve(
        self, ctx: ToolContext, *, tool: str, host: str, url: str, sources: list[str]
    ) -> ApprovalDecision:
        run_id = await asyncio.shield(self._inserted)
        if self._made is None:  # one approver per run: it asks one question at a time
            self._made = self._make(run_id)
        return await self._made.approve(ctx, tool=tool, host=host, url=url, sources=sources)


class _ApprovalsOnceInserted:
    """The run's gate for write calls, made when first asked (the parked call names the run)."""

    def __init__(self, make: Callable[[int], Approvals], inserted: asyncio.Task[int]) -> None:
        self._make, self._inserted = make, inserted
        self._made: Approvals | None = None

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None:
        run_id = await asyncio.shield(self._inserted)
        if self._made is None:
            self._made = self._make(run_id)
        return await self._made(tool, arguments)


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
    approvals: Callable[[int], Approvals] | None = None,
    model: str | None = None,
    caps: Effective | None = None,
) -> AsyncIterator[TracedRun]:
    """Run the block as run `trigger`; an exception ends the run and comes out as RunFailed.

    Cancellation (shutdown) marks the run interrupted and propagates unchanged. `approver` makes
    the run's approval gate from its id (the buttons name the run); `approvals` likewise the
    gate of write calls. `model` is the channel's model (the default when None). `caps`: the
    place's settings, whose daily token caps the run reserves against before the block starts
    (`run.allowance`: a refusal, or what its model calls may spend); the hold is settled when
    the run ends, however it ends.
    """
    held = Allowance()
    if caps is not None and rt.llm is not None:
        held = await budget.reserve(rt, caps, team=team, user=user, channel=channel)
    model = (model or rt.settings.openai_model) if rt.llm else None
    row = run_values(
        trigger,
        conversation_id=conversation_id,
        team_id=team,
        channel_id=channel,
        thread_ts=thread_ts,
        user_id=user,
        model=model,
    )
    inserted = asyncio.get_running_loop().create_task(rt.db.runs.insert(row), name=f"start run {trigger}")
    trace = DbTrace(rt.db, inserted, on_status=on_status)
    ctx = rt.tool_context(
        trace,
        team=team,
        user=user,
        channel=channel,
        thread_ts=reply_thread_ts,
        approver=_ApproverOnceInserted(approver, inserted) if approver else None,
        model=model,
    )
    ctx.approvals = _ApprovalsOnceInserted(approvals, inserted) if approvals else None
    ctx.usage.limit = held.remaining
    run = TracedRun(ctx, trace, inserted, held)

    async def finish(status: str, error: str | None, **fields: Any) -> None:
        run_id = await run.ready()  # a failed insert raises here: there is no row to finish
        await trace.settle()  # the steps still queued are written with the finish
        await rt.db.runs.finish(
            run_id,
            status,
            started_at=row["started_at"],
            trigger=trigger,
            model=model or "",
            steps=trace.take(),
            error=error,
            sources=" ".join(ctx.flow.private_sources) or None,
            **_usage(ctx),
            **fields,
        )
        await budget.settle(rt, held)  # after the row has the tokens: never counted as neither

    try:
        yield run
    except asyncio.CancelledError:
        await finish("interrupted", INTERRUPTED)
        raise
    except Exception as exc:
        expected = isinstance(exc, EXPECTED)
        reason = failure_reason(exc)
        await finish("failed", reason[:MAX_ERROR_CHARS])
        if expected:
            log.warning("run %s (%s) failed: %s", run.id, trigger, message_text(reason))
        elif isinstance(exc, JobLost):
            log.warning("run %s (%s): another process took its job over", run.id, trigger)
        elif database_unavailable(exc):  # the database's fault, told as such; the job is redone
            log.warning("run %s (%s): the database went away (%s)", run.id, trigger, type(exc).__name__)
        else:
            log.exception("run %s (%s) failed", run.id, trigger)
        raise RunFailed(run.id, reason, expected=expected) from exc
    await finish(run.status, run.error, **run.fields)
