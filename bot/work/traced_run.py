"""One way to run traced work: start the run, hand out its context, apply one failure policy, finish.

Conversations, slash commands and digests all go through `traced_run`, so every run row ends with
the same statuses, the same error wording and its token usage, whichever door it came in by.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.controls import budget
from bot.controls.budget import Allowance
from bot.controls.channel_config import Effective
from bot.db.database import database_unavailable
from bot.db.models import utcnow
from bot.db.queries.runs import run_values
from bot.db.queries.trace import DbTrace, RunRow, StatusSink
from bot.logging_setup import message_text
from bot.ops import metrics
from bot.runtime import Runtime
from bot.work import Job, JobLost, current_job
from orchestrators.agent.loop import AgentError
from tools.toolkit.context import ApprovalDecision, Approvals, Approver, ToolContext
from tools.toolkit.errors import SwitchboardError
from tools.toolkit.registry import ToolError

log = logging.getLogger(__name__)

# The one catch list: failures already worded for a person (a tool, the model, Slack said no).
# Anything else is a bug: logged with its traceback and shown to the user only as a reference.
EXPECTED: tuple[type[Exception], ...] = (ToolError, AgentError, SlackApiError)
MAX_ERROR_CHARS = 2_000
INTERRUPTED = "interrupted by shutdown"
# A run written only at its end (`at_job_end`) is written once it has gone on this long: an
# operator sees it running, and a process dying under it leaves it to be marked interrupted.
RUN_ON_FILE_AFTER = 5.0


class RunFailed(SwitchboardError):
    """A traced run ended with an exception; the run row already says so."""

    def __init__(self, run_id: int, reason: str, *, expected: bool) -> None:
        # An expected failure's reason is worded for the person; anything else gets the apology.
        super().__init__(reason, user_message=reason if expected else None)
        self.run_id = run_id
        self.reason = reason
        self.expected = expected  # one of EXPECTED: the reason can be shown as it is


# One of the writes that end a run with it (an answer's messages): (connection, run id,
# conversation id), in the transaction that writes the run's end.
EndWrite = Callable[[AsyncConnection, int, int | None], Awaitable[None]]


@dataclass(frozen=True)
class Askers:
    """Whom a run asks, each made from the run's id (the prompts name the run): `approver` for
    egress approvals, `approvals` for write calls. None: nobody is asked (refused)."""

    approver: Callable[[int], Approver] | None = None
    approvals: Callable[[int], Approvals] | None = None


NOBODY = Askers()  # the console and the evals: nobody to ask


@dataclass
class TracedRun:
    """The run in progress: its row, the tools' context, and the outcome to record at the end.

    Written at the end by default only when `at_job_end`; otherwise the row is inserted while the
    block's first model call is under way, so `id` is known after `ready()`, and always after
    the block.
    """

    ctx: ToolContext
    trace: DbTrace
    row: RunRow
    allowance: Allowance = field(default_factory=Allowance)  # refusal set: ask no model
    status: str = "ok"
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    end_writes: list[EndWrite] = field(default_factory=list)
    job: Job | None = None  # the job whose end writes the run (`at_job_end`)

    @property
    def id(self) -> int:
        found = self.row.id
        if found is None:
            raise RuntimeError("the run row is not written yet: await run.ready() first")
        return found

    async def ready(self) -> int:
        """The run's id, its row written now if it was not (raises what the insert raised)."""
        return await self.row.ensure()

    async def reference(self) -> str:
        """What buttons under the answer name the run by: its id, or "j<job>" while its row
        waits for its job's end (the listeners find the run through the job)."""
        if self.row.id is None and self.row.task is None and self.job is not None:
            return f"j{self.job.id}"
        return str(await self.ready())

    async def flush(self) -> None:
        """Make the run and every step so far durable."""
        await self.ready()
        await self.trace.flush()

    def finish(self, status: str = "ok", error: str | None = None, **fields: Any) -> None:
        """Set what the run row says when the block ends (without an exception)."""
        self.status, self.error, self.fields = status, error, fields

    def with_end(self, write: EndWrite) -> None:
        """Write `write` in the transaction that writes the run's end (however the run ends, but
        for an interruption: a redo runs it again)."""
        self.end_writes.append(write)


class _ApproverOnceInserted:
    """The run's approver, made when first asked (its buttons name the run, so the row must exist)."""

    def __init__(self, make: Callable[[int], Approver], row: RunRow) -> None:
        self._make, self._row = make, row
        self._made: Approver | None = None

    async def approve(
        self, ctx: ToolContext, *, tool: str, host: str, url: str, sources: list[str]
    ) -> ApprovalDecision:
        run_id = await self._row.ensure()
        if self._made is None:  # one approver per run: it asks one question at a time
            self._made = self._make(run_id)
        return await self._made.approve(ctx, tool=tool, host=host, url=url, sources=sources)


class _ApprovalsOnceInserted:
    """The run's gate for write calls, made when first asked (the parked call names the run)."""

    def __init__(self, make: Callable[[int], Approvals], row: RunRow) -> None:
        self._make, self._row = make, row
        self._made: Approvals | None = None

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None:
        run_id = await self._row.ensure()
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


def _conversation_of(
    rt: Runtime, known: int | None, key: tuple[str, str, str] | None
) -> Callable[[AsyncConnection], Awaitable[int]] | None:
    """How the run's writes learn its conversation's id: known, or made with them (a new thread)."""
    if known is not None:
        found = known

        async def given(_conn: AsyncConnection) -> int:
            return found

        return given
    if key is not None:
        team, channel, thread = key
        return lambda conn: rt.db.conversations.create(conn, team, channel, thread)
    return None


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
    conversation_key: tuple[str, str, str] | None = None,
    on_status: StatusSink | None = None,
    askers: Askers = NOBODY,
    model: str | None = None,
    caps: Effective | None = None,
    at_job_end: bool = False,
) -> AsyncIterator[TracedRun]:
    """Run the block as run `trigger`; an exception ends the run and comes out as RunFailed.

    Cancellation (shutdown) marks the run interrupted and propagates unchanged. `askers` make
    the run's approval gates from its id (the buttons name the run). `model` is the channel's
    model (the default when None). `caps`: the place's settings, whose daily token caps the run
    reserves against before the block starts (`run.allowance`: a refusal, or what its model
    calls may spend); the hold is settled when the run ends, however it ends.
    `conversation_key` (team, channel, thread) names a conversation that may not exist yet: it
    is made with the run's first write.

    `at_job_end`: the run's row is not written when it starts. Ending well, it is written whole,
    with its steps, what `run.with_end` adds (an answer's messages) and the hold's release, in
    the transaction that finishes the job running it (bot/work): a quick answer's whole record
    is one transaction. A run going on for RUN_ON_FILE_AFTER seconds, or whose trace writes
    behind, or that an approval names, is written then; a failure or an interruption is
    written when it happens (its apology names the run).
    """
    held = Allowance()
    if caps is not None and rt.llm is not None:
        held = await budget.reserve(rt, caps, team=team, user=user, channel=channel)
    opened = _open(
        rt,
        trigger,
        held,
        team=team,
        channel=channel,
        user=user,
        thread_ts=thread_ts,
        reply_thread_ts=reply_thread_ts,
        conversation=_conversation_of(rt, conversation_id, conversation_key),
        conversation_id=conversation_id,
        on_status=on_status,
        askers=askers,
        model=(model or rt.settings.openai_model) if rt.llm else None,
        at_job_end=at_job_end,
    )
    run = opened.run
    try:
        yield run
    except asyncio.CancelledError:
        run.end_writes.clear()  # the attempt that takes over writes them
        await _end(rt, trigger, opened, "interrupted", INTERRUPTED)
        raise
    except Exception as exc:  # the run's boundary: any failure ends the run row
        reason = failure_reason(exc)
        await _end(rt, trigger, opened, "failed", reason[:MAX_ERROR_CHARS])
        _log_failure(run, trigger, exc, reason)
        raise RunFailed(run.id, reason, expected=isinstance(exc, EXPECTED)) from exc
    await _end(rt, trigger, opened, run.status, run.error, at_end=True, **run.fields)


@dataclass
class _Opened:
    """A run begun: the run, its row's first values, how its writes learn its conversation, and
    the timer that puts a long run on file before its job ends."""

    run: TracedRun
    values: dict[str, Any]
    conversation: Callable[[AsyncConnection], Awaitable[int]] | None
    on_file: asyncio.TimerHandle | None


def _open(
    rt: Runtime,
    trigger: str,
    held: Allowance,
    *,
    team: str,
    channel: str,
    user: str,
    thread_ts: str | None,
    reply_thread_ts: str | None,
    conversation: Callable[[AsyncConnection], Awaitable[int]] | None,
    conversation_id: int | None,
    on_status: StatusSink | None,
    askers: Askers,
    model: str | None,
    at_job_end: bool,
) -> _Opened:
    """The run's row (written now, or with its job's end), trace and tools' context."""
    values = run_values(
        trigger,
        conversation_id=conversation_id,
        team_id=team,
        channel_id=channel,
        thread_ts=thread_ts,
        user_id=user,
        model=model,
    )
    row = RunRow(rt.db, values, conversation if conversation_id is None else None)
    trace = DbTrace(rt.db, row, on_status=on_status)
    ctx = rt.tool_context(
        trace,
        team=team,
        user=user,
        channel=channel,
        thread_ts=reply_thread_ts,
        approver=_ApproverOnceInserted(askers.approver, row) if askers.approver else None,
        model=model,
    )
    ctx.approvals = _ApprovalsOnceInserted(askers.approvals, row) if askers.approvals else None
    ctx.usage.limit = held.remaining
    job = current_job.get() if at_job_end else None
    run = TracedRun(ctx, trace, row, held, job=job)
    on_file: asyncio.TimerHandle | None = None
    if at_job_end:
        on_file = asyncio.get_running_loop().call_later(RUN_ON_FILE_AFTER, trace.on_file)
    else:
        row.start()  # beside the block's first model call
    return _Opened(run, values, conversation, on_file)


async def _end(
    rt: Runtime,
    trigger: str,
    opened: _Opened,
    status: str,
    error: str | None,
    *,
    at_end: bool = False,
    **fields: Any,
) -> None:
    """Write the run's end: its row, steps, the hold's release and its end writes, in one
    transaction (with its job's end when `at_end` and a job runs it)."""
    run, values, conversation = opened.run, opened.values, opened.conversation
    row, trace, ctx, held, job = run.row, run.trace, run.ctx, run.allowance, run.job
    if opened.on_file is not None:
        opened.on_file.cancel()
    await trace.settle()  # the steps still queued are written with the end
    written = await row.written()
    if row.task is not None and written is None:
        await row.ensure()  # its insert failed: raises that, there is no row to end
    finished_at = utcnow()
    steps = trace.take()
    end = dict(error=error, sources=" ".join(ctx.flow.private_sources) or None, **_usage(ctx), **fields)

    async def write(conn: AsyncConnection) -> int:
        conversation_id = await conversation(conn) if conversation is not None else None
        start = values if written is not None else {**values, "conversation_id": conversation_id}
        run_id = await rt.db.runs.end_in(
            conn, written, start, status, finished_at=finished_at, steps=steps, **end
        )
        if held.reservation is not None:  # the row has the tokens now: never counted as neither
            await rt.db.usage.release(conn, held.reservation)
        for also in run.end_writes:
            await also(conn, run_id, conversation_id)
        row.ended_id = run_id
        return run_id

    async def with_job(conn: AsyncConnection) -> dict[str, Any]:
        # "j<job>" buttons under the answer find the run through its job's progress.
        return {**(job.progress if job else {}), "run": await write(conn)}

    if at_end and job is not None and job.at_end(with_job, lambda: metrics.run_finished(trigger, status)):
        return

    async def landed(conn: AsyncConnection) -> int | None:
        return await rt.db.runs.ended(conn, written, values, finished_at)

    await rt.db.transaction(write, landed=landed, what="run end")
    metrics.run_finished(trigger, status)


def _log_failure(run: TracedRun, trigger: str, exc: Exception, reason: str) -> None:
    """An expected failure, a lost job or the database's absence is a warning; anything else a bug."""
    if isinstance(exc, EXPECTED):
        log.warning("run %s (%s) failed: %s", run.id, trigger, message_text(reason))
    elif isinstance(exc, JobLost):
        log.warning("run %s (%s): another process took its job over", run.id, trigger)
    elif database_unavailable(exc):  # the database's fault, told as such; the job is redone
        log.warning("run %s (%s): the database went away (%s)", run.id, trigger, type(exc).__name__)
    else:
        log.exception("run %s (%s) failed", run.id, trigger)
