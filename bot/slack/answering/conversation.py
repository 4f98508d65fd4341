"""One conversational turn: the user's message in, the LLM orchestrator, the answer out."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.controls.channel_config import Effective
from bot.db.database import database_unavailable
from bot.db.models import Conversation
from bot.db.queries.conversations import message_rows
from bot.runtime import Runtime
from bot.slack.answering.approval_prompts import SlackApprover, Where
from bot.slack.answering.files import (
    FileReading,
    content_parts,
    note_private_files,
    read_message_files,
    tell_problems,
    trace_files,
    with_files,
)
from bot.slack.answering.write_approvals import ParkedWrites
from bot.slack.output.calls import SLACK_FAILED
from bot.slack.output.refusals import refusal_of
from bot.slack.output.render import feedback_blocks
from bot.slack.output.surface import AnswerSurface, capped_answer, unfurl_allowed
from bot.work import Job, JobLost, current_job
from bot.work.traced_run import Askers, EndWrite, RunFailed, TracedRun, failure_reason, traced_run
from orchestrators.agent.state import AgentResult
from tools.toolkit.errors import InvariantError, user_message

log = logging.getLogger(__name__)

MAX_USER_CHARS = 40_000
HISTORY = 400  # the newest messages an answer reads
GAVE_UP = "Sorry, I was restarted several times while answering this and gave up. Please ask again."
DATABASE_SILENT = "Sorry, my database did not respond. Please try again in a moment."
WENT_WRONG = "Sorry, something went wrong on my side while answering. Please try again in a moment."
DATABASE_DOWN = (
    "Sorry, I can't answer right now: my database is not responding. Please try again in a few minutes."
)


@dataclass(frozen=True)
class Turn:
    """Where a message came from and where its answer goes."""

    team: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str  # the conversation's key: the thread root (or "main" for a DM's top level)
    reply_thread_ts: str | None  # where to post; None posts top-level (a DM's main view)
    trigger: str
    files: tuple[dict[str, Any], ...] = ()  # Slack file objects shared with the message
    context: str = ""  # a line the model reads before the question (e.g. the channel being viewed)


def clean_text(text: str, bot_user_id: str | None) -> str:
    """Drop the bot's own mention so the model sees the question, not the addressing."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text)
    return text.strip()[:MAX_USER_CHARS]


@contextlib.asynccontextmanager
async def apology_if_database_down(rt: Runtime, channel: str, thread_ts: str | None) -> AsyncIterator[None]:
    """When the database does not answer, say so in the thread: posting needs no database.
    Inside a recorded job (bot/work) nothing is said: the engine redoes the job."""
    try:
        yield
    except Exception as exc:  # DB errors share no class: sorted below
        if isinstance(exc, JobLost) and current_job.get() is not None:
            return  # another process holds the job now and answers
        if not database_unavailable(exc):
            raise
        if (job := current_job.get()) is not None:
            job.again = True
            return
        log.error("database unavailable, apologising in %s/%s: %s", channel, thread_ts, exc)
        try:  # through the answer surface: Slack's transient failures are retried there
            surface = AnswerSurface(rt.slack, channel, thread_ts, team="", user="", native=False)
            await surface.fail(DATABASE_DOWN)
        except Exception:  # last words: nothing left to do
            log.exception("could not post the database apology either")


@dataclass(frozen=True)
class Attempt:
    """Which try at a queued turn this is: its tag in Slack, whether a dead attempt came first,
    the native streams that attempt started, and where to record a stream this one starts."""

    tag: str | None = None
    redo: bool = False
    streams: tuple[str, ...] = ()
    on_stream: Callable[[str], Awaitable[None]] | None = None


async def surface_for(rt: Runtime, turn: Turn, attempt: Attempt) -> AnswerSurface:
    return AnswerSurface(
        rt.slack,
        turn.channel,
        turn.reply_thread_ts,
        team=turn.team,
        user=turn.user,
        native=AnswerSurface.for_channel(turn.channel, turn.reply_thread_ts),
        interval=rt.settings.stream_update_seconds,
        tag=attempt.tag,
        max_messages=rt.settings.slack_max_messages_per_answer,
        on_stream=attempt.on_stream,
        unfurl=await unfurl_allowed(rt, turn.channel),
    )


async def give_up(rt: Runtime, turn: Turn, attempt: Attempt) -> None:
    """A turn whose process died again and again: replace what it showed with an apology."""
    surface = await surface_for(rt, turn, attempt)
    if await surface.resume(attempt.streams):
        return  # its answer was shown before the last crash
    await surface.fail(GAVE_UP)


async def answer(rt: Runtime, turn: Turn, attempt: Attempt | None = None) -> None:
    """Run the agent for this turn and show it working; never leaves the user in silence.

    A redo (a process died answering it before) adopts what that attempt showed in Slack, or,
    if it had shown the whole answer, leaves the turn as it is.
    """
    attempt = attempt or Attempt()
    surface = await surface_for(rt, turn, attempt)
    if attempt.redo and await _adopted(rt, turn, attempt, surface):
        return
    question = await _question(rt, turn)
    if question is None:
        return  # only unreadable files: what was said about them is the whole answer
    exchange = await _read_exchange(rt, turn, attempt, question)
    job = current_job.get()  # None outside the work engine (the console)
    # A person's answers in flight are capped where turns start (bot/work): no slot to wait for here.
    try:
        async with _traced(rt, turn, surface, exchange) as run:
            await _answer_in_run(rt, turn, surface, exchange, run, job)
    except RunFailed as failed:
        await _after_failure(surface, failed, job)


@dataclass(frozen=True)
class Question:
    """What the model is asked: the text (with the files' text and the turn's context line) and
    the files read for it (None when the message shared none)."""

    text: str
    reading: FileReading | None


@dataclass
class Exchange:
    """What an answer reads before it runs (in one unit, outside any transaction) and what it
    writes with its end: the question unless stored already, and the run's messages."""

    question: Question
    convo: Conversation | None
    stored: list[dict[str, Any]]  # the conversation's history, oldest first
    asking: list[dict[str, Any]]  # the question to store ([] when a dead attempt stored it)
    here: Effective  # the channel's settings
    replies: list[dict[str, Any]] = field(default_factory=list)  # once the answer is shown


async def _adopted(rt: Runtime, turn: Turn, attempt: Attempt, surface: AnswerSurface) -> bool:
    """A redo whose dead attempt had shown the whole answer: keep it, store it, stop."""
    if not await surface.resume(attempt.streams):
        return False
    log.info("%s/%s: the answer was shown before its process died", turn.channel, turn.ts)
    await _remember_shown(rt, turn, surface.shown)
    return True


async def _question(rt: Runtime, turn: Turn) -> Question | None:
    """The question with its files read (problems told in the thread); None when there is
    nothing to ask: no question and no readable file."""
    text = clean_text(turn.text, rt.bot_user_id)
    reading = await read_message_files(rt, list(turn.files)) if turn.files else None
    if reading is not None:
        await tell_problems(rt, turn.channel, turn.reply_thread_ts, reading)
        if not reading.readable and not text:
            return None
        text = with_files(text or "(files only, no question)", reading)
    return Question(_with_context(turn, text), reading)


async def _read_exchange(rt: Runtime, turn: Turn, attempt: Attempt, question: Question) -> Exchange:
    """What the answer needs, read in one unit outside any transaction; what it writes (the
    conversation if new, the question, the run, its steps, the reply) is written with its end."""
    conversations = rt.db.conversations
    async with rt.db.reading() as conn:
        convo = await conversations.find(turn.team, turn.channel, turn.thread_ts, conn)
        asked = bool(
            convo and convo.id and attempt.redo and await conversations.has_message(convo.id, turn.ts, conn)
        )
        stored = (
            await conversations.history(convo.id, HISTORY - (not asked), conn) if convo and convo.id else []
        )
        here = await rt.db.channel_settings.effective(turn.team, turn.channel, conn)
    asking = [] if asked else [{"role": "user", "content": question.text}]
    return Exchange(question, convo, stored, asking, here)


def _traced(
    rt: Runtime, turn: Turn, surface: AnswerSurface, exchange: Exchange
) -> contextlib.AbstractAsyncContextManager[TracedRun]:
    """The turn's traced run, written with its job's end, approvals asked in its thread."""
    where = Where(turn.team, turn.channel, turn.reply_thread_ts, turn.user)
    convo, here = exchange.convo, exchange.here
    return traced_run(
        rt,
        turn.trigger,
        team=turn.team,
        channel=turn.channel,
        user=turn.user,
        thread_ts=turn.thread_ts,
        reply_thread_ts=turn.reply_thread_ts,
        conversation_id=convo.id if convo else None,
        conversation_key=(turn.team, turn.channel, turn.thread_ts),
        on_status=surface.status,
        askers=Askers(
            approver=lambda run_id: SlackApprover(rt, where, run_id),
            approvals=lambda run_id: ParkedWrites(rt, where, run_id, conversation=turn.thread_ts),
        ),
        model=here.model,
        caps=here,
        at_job_end=True,
    )


async def _answer_in_run(
    rt: Runtime, turn: Turn, surface: AnswerSurface, exchange: Exchange, run: TracedRun, job: Job | None
) -> None:
    """Inside the run: begin showing, ask the model (unless a cap refuses), show and record."""
    run.with_end(_keeper(rt, turn, exchange, run))
    if job is not None:
        await job.still_ours()  # a process paused past its lease shows nothing
    await surface.begin()
    if refusal := run.allowance.refusal:  # a cap is reached (a daily one says when it resets)
        await surface.finish(refusal)
        run.finish("refused", error=refusal)
        return
    history = await _model_history(rt, turn, exchange, run)
    result = await _run_agent(rt, surface, exchange.here, run, history)
    # The run, its steps and these messages are written after the answer is shown, with the
    # job's end: a process dying in between leaves the job to a redo, which finds the answer
    # shown and keeps it (`_remember_shown`).
    if job is not None:
        await job.still_ours()
    await _show(rt, surface, exchange, run, result)


def _keeper(rt: Runtime, turn: Turn, exchange: Exchange, run: TracedRun) -> EndWrite:
    """The write that stores the question and the run's messages with the run's end."""

    async def keep_messages(conn: AsyncConnection, run_id: int, conversation_id: int | None) -> None:
        if conversation_id is None:
            raise InvariantError("an answer's run has no conversation")
        rows = message_rows(conversation_id, exchange.asking, user_id=turn.user, slack_ts=turn.ts)
        rows += message_rows(conversation_id, exchange.replies, run.ctx.flow.private_sources, run_id=run_id)
        await rt.db.conversations.insert_rows(conn, conversation_id, rows)

    return keep_messages


async def _model_history(rt: Runtime, turn: Turn, exchange: Exchange, run: TracedRun) -> list[dict[str, Any]]:
    """The messages the model reads: the stored history and the question, its files traced and
    private ones noted; this turn's images ride with the question only (the stored history keeps
    names, not bytes)."""
    history = [*exchange.stored, *exchange.asking]
    reading = exchange.question.reading
    await note_private_files(rt, run.ctx, turn.channel, history)
    await trace_files(run.ctx, reading)
    if reading is not None and reading.images and history and history[-1].get("role") == "user":
        history[-1] = {**history[-1], "content": content_parts(history[-1]["content"], reading.images)}
    return history


async def _run_agent(
    rt: Runtime, surface: AnswerSurface, here: Effective, run: TracedRun, history: list[dict[str, Any]]
) -> AgentResult:
    """The agent loop with the channel's model, tools and instructions, streamed to the surface."""
    return await rt.agent.run(
        history,
        run.ctx,
        on_text=surface.delta,
        model=here.model,
        registry=await rt.tools(here.tools.allows),
        instructions=here.instructions,
        token_budget=run.allowance.remaining,
    )


async def _show(
    rt: Runtime, surface: AnswerSurface, exchange: Exchange, run: TracedRun, result: AgentResult
) -> None:
    """Post the final answer and set what the run records; a failed post ends the run failed."""
    try:
        text = capped_answer(result.text, rt.settings.answer_max_chars)
        stamps = await surface.finish(
            text,
            feedback_blocks(await run.reference()) if rt.llm else None,
            private=bool(run.ctx.flow.private_sources),  # its links never unfurl
        )
    except Exception as exc:  # the answer may be half shown: no apology on top of it
        log.exception("run %s: could not post the answer", run.row.id or "?")
        run.finish("failed", error=f"posting the answer failed: {failure_reason(exc)}")
        return
    exchange.replies.extend(result.messages)
    run.finish(
        "ok" if result.status in ("ok", "unconfigured") else result.status,
        error=result.stop_reason,
        answer_ts=stamps[-1] if stamps else None,
    )


async def _after_failure(surface: AnswerSurface, failed: RunFailed, job: Job | None) -> None:
    """A lost lease or a database outage inside a job goes back to the engine (another process
    answers, or a redo adopts what this attempt showed); anything else is apologised for."""
    if isinstance(failed.__cause__, JobLost):
        raise failed.__cause__ from None
    if database_unavailable(failed) and job is not None:
        raise failed
    await _apologise(surface, failed)


def _with_context(turn: Turn, question: str) -> str:
    return f"{turn.context}\n\n{question}" if turn.context else question or "(an empty message)"


async def _remember_shown(rt: Runtime, turn: Turn, text: str) -> None:
    """The dead attempt showed its answer but died before storing it (it is stored with the
    job's end): the history keeps the question and what the user saw, so the thread's next
    question has them.

    What that attempt had read died with it, so outside a public channel the answer counts as
    this conversation's own non-public content (later turns ask before sending data out).
    """
    if not text:
        return
    convo = await rt.db.conversations.get_or_create(turn.team, turn.channel, turn.thread_ts)
    if convo.id is None:
        raise InvariantError("a stored conversation has no id")
    asked = await rt.db.conversations.has_message(convo.id, turn.ts)
    history = await rt.db.conversations.history(convo.id, limit=1)
    if asked and not (history and history[-1].get("role") == "user"):
        return  # stored already
    try:
        public = (await rt.memberships.channel(rt.slack, turn.channel)).is_public
    except SLACK_FAILED:
        public = False  # unknown counts as private
    sources = () if public else (f"slack:{turn.channel}",)
    if not asked:
        question = _with_context(turn, clean_text(turn.text, rt.bot_user_id))
        await rt.db.conversations.add_messages(
            convo.id, [{"role": "user", "content": question}], user_id=turn.user, slack_ts=turn.ts
        )
    await rt.db.conversations.add_messages(
        convo.id, [{"role": "assistant", "content": text}], sources=sources
    )


async def _apologise(surface: AnswerSurface, failed: RunFailed) -> None:
    """Say what went wrong, blaming whom it was: Slack's refusals are told to the asker (in
    private, since the conversation refused), and only the model's errors blame the model."""
    cause = failed.__cause__
    try:
        if isinstance(cause, SlackApiError):
            await surface.tell_asker(refusal_of(cause))
            return
        if cause is not None and database_unavailable(cause):
            sorry = DATABASE_SILENT
        else:  # our errors carry their words (the model's blame the model); anything else is ours
            sorry = user_message(cause, default=WENT_WRONG)
        await surface.fail(f"{sorry} (reference: run {failed.run_id})")
    except Exception:  # last words: nothing left to do
        log.exception("run %s: could not post the apology either", failed.run_id)
