"""One conversational turn: the user's message in, the LLM orchestrator, the answer out."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from bot import budget
from bot.db.trace import DbTrace
from bot.runtime import Runtime
from bot.slack.approvals import SlackApprover, Where
from bot.slack.files import content_parts, read_message_files, tell_problems, with_files
from bot.slack.render import feedback_blocks
from bot.slack.surface import AnswerSurface
from bot.slack.write_approvals import ParkedWrites
from orchestrators.llm import AgentError
from tools.context import ToolContext

log = logging.getLogger(__name__)

MAX_USER_CHARS = 40_000


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


async def answer(rt: Runtime, turn: Turn) -> None:
    """Run the agent for this turn and show it working; never leaves the user in silence."""
    convo = await rt.db.conversations.get_or_create(turn.team, turn.channel, turn.thread_ts)
    assert convo.id is not None
    question = clean_text(turn.text, rt.bot_user_id)
    reading = await read_message_files(rt, list(turn.files)) if turn.files else None
    if reading is not None:
        await tell_problems(rt, turn.channel, turn.reply_thread_ts, reading)
        if not reading.readable and not question:
            return  # only unreadable files: the sentence above is the whole answer
        question = with_files(question or "(files only, no question)", reading)
    question = f"{turn.context}\n\n{question}" if turn.context else question or "(an empty message)"
    await rt.db.conversations.add_messages(
        convo.id, [{"role": "user", "content": question}], user_id=turn.user, slack_ts=turn.ts
    )
    here = await rt.db.channel_settings.effective(turn.team, turn.channel)
    model = here.model or rt.settings.openai_model
    run = await rt.db.runs.start(
        turn.trigger,
        conversation_id=convo.id,
        team_id=turn.team,
        channel_id=turn.channel,
        thread_ts=turn.thread_ts,
        user_id=turn.user,
        model=model if rt.llm else None,
    )
    assert run.id is not None
    surface = AnswerSurface(
        rt.slack,
        turn.channel,
        turn.reply_thread_ts,
        team=turn.team,
        user=turn.user,
        native=AnswerSurface.for_channel(turn.channel, turn.reply_thread_ts),
        interval=rt.settings.stream_interval,
    )
    trace = DbTrace(rt.db, run.id, on_status=surface.status)
    where = Where(turn.team, turn.channel, turn.reply_thread_ts, turn.user)
    ctx = rt.tool_context(
        trace,
        team=turn.team,
        user=turn.user,
        channel=turn.channel,
        thread_ts=turn.reply_thread_ts,
        model=model,
        approver=SlackApprover(rt, where, run.id),
    )
    ctx.approvals = ParkedWrites(rt, where, run.id, conversation=turn.thread_ts)
    allowed = await budget.check(rt, here, team=turn.team, user=turn.user, channel=turn.channel)
    if allowed.refusal and rt.llm:
        await _refuse(rt, surface, run.id, allowed.refusal)
        return
    try:
        await surface.begin()
        history = await rt.db.conversations.history(convo.id)
        if reading is not None and reading.images and history and history[-1].get("role") == "user":
            # Images ride with this turn only; the stored history keeps their names, not their bytes.
            history[-1] = {**history[-1], "content": content_parts(history[-1]["content"], reading.images)}
        result = await rt.agent.run(
            history,
            ctx,
            on_text=surface.delta,
            model=model,
            registry=rt.tools(here.tools.allows),
            instructions=here.instructions,
            token_budget=allowed.remaining,
        )
    except asyncio.CancelledError:
        await rt.db.runs.finish(run.id, "interrupted", error="interrupted by shutdown")
        await surface.fail("Sorry, I was restarted before I could finish. Please ask again.")
        raise
    except AgentError as exc:
        log.warning("run %s: the model failed: %s", run.id, exc)
        await _apologise(rt, surface, run.id, str(exc), ctx)
        return
    except Exception as exc:
        log.exception("run %s failed", run.id)
        await _apologise(rt, surface, run.id, f"{type(exc).__name__}: {exc}", ctx)
        return
    usage = ctx.usage
    try:
        stamps = await surface.finish(result.text, feedback_blocks(run.id) if rt.llm else None)
    except Exception as exc:
        log.exception("run %s: could not post the answer", run.id)
        await rt.db.runs.finish(run.id, "failed", error=f"posting the answer failed: {exc}")
        return
    await rt.db.conversations.add_messages(convo.id, result.messages, run_id=run.id)
    await rt.db.runs.finish(
        run.id,
        "ok" if result.status in ("ok", "unconfigured") else result.status,
        error=result.stop_reason,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        llm_calls=usage.llm_calls,
        answer_ts=stamps[-1] if stamps else None,
    )


async def _refuse(rt: Runtime, surface: AnswerSurface, run_id: int, text: str) -> None:
    """A daily cap is used up: say so, and when it resets, without calling the model."""
    await rt.db.runs.finish(run_id, "refused", error=text[:2000])
    try:
        await surface.begin()
        await surface.finish(text)
    except Exception:
        log.exception("run %s: could not post the refusal", run_id)


async def _apologise(rt: Runtime, surface: AnswerSurface, run_id: int, error: str, ctx: ToolContext) -> None:
    usage = ctx.usage  # tokens spent before the failure still count towards caps and cost
    await rt.db.runs.finish(
        run_id,
        "failed",
        error=error[:2000],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        llm_calls=usage.llm_calls,
    )
    text = (
        "Sorry, I couldn't get an answer from the language model just now. "
        f"Please try again in a moment. (reference: run {run_id})"
    )
    try:
        await surface.fail(text)
    except Exception:
        log.exception("run %s: could not post the apology either", run_id)
