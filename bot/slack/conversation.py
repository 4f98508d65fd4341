"""One conversational turn: the user's message in, the LLM orchestrator, the answer out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.db.engine import database_unavailable
from bot.db.trace import DbTrace
from bot.runtime import Runtime
from bot.slack.render import feedback_blocks
from bot.slack.surface import AnswerSurface
from orchestrators.llm import AgentError

log = logging.getLogger(__name__)

MAX_USER_CHARS = 40_000
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


def clean_text(text: str, bot_user_id: str | None) -> str:
    """Drop the bot's own mention so the model sees the question, not the addressing."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text)
    return text.strip()[:MAX_USER_CHARS]


@contextlib.asynccontextmanager
async def apology_if_database_down(rt: Runtime, turn: Turn) -> AsyncIterator[None]:
    """When the database does not answer, say so in the thread: posting needs no database."""
    try:
        yield
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.error("database unavailable, apologising to %s/%s: %s", turn.channel, turn.ts, exc)
        try:
            await rt.slack.chat_postMessage(
                channel=turn.channel, thread_ts=turn.reply_thread_ts, text=DATABASE_DOWN
            )
        except Exception:
            log.exception("could not post the database apology either")


async def answer(rt: Runtime, turn: Turn) -> None:
    """Run the agent for this turn and show it working; never leaves the user in silence."""
    convo = await rt.db.conversations.get_or_create(turn.team, turn.channel, turn.thread_ts)
    assert convo.id is not None
    question = clean_text(turn.text, rt.bot_user_id) or "(an empty message)"
    await rt.db.conversations.add_messages(
        convo.id, [{"role": "user", "content": question}], user_id=turn.user, slack_ts=turn.ts
    )
    run = await rt.db.runs.start(
        turn.trigger,
        conversation_id=convo.id,
        team_id=turn.team,
        channel_id=turn.channel,
        thread_ts=turn.thread_ts,
        user_id=turn.user,
        model=rt.settings.openai_model if rt.llm else None,
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
    ctx = rt.tool_context(
        trace, team=turn.team, user=turn.user, channel=turn.channel, thread_ts=turn.reply_thread_ts
    )
    try:
        await surface.begin()
        history = await rt.db.conversations.history(convo.id)
        result = await rt.agent.run(history, ctx, on_text=surface.delta)
    except asyncio.CancelledError:
        await rt.db.runs.finish(run.id, "interrupted", error="interrupted by shutdown")
        await surface.fail("Sorry, I was restarted before I could finish. Please ask again.")
        raise
    except AgentError as exc:
        log.warning("run %s: the model failed: %s", run.id, exc)
        await _apologise(rt, surface, run.id, str(exc))
        return
    except Exception as exc:
        log.exception("run %s failed", run.id)
        await _apologise(rt, surface, run.id, f"{type(exc).__name__}: {exc}")
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


async def _apologise(rt: Runtime, surface: AnswerSurface, run_id: int, error: str) -> None:
    await rt.db.runs.finish(run_id, "failed", error=error[:2000])
    text = (
        "Sorry, I couldn't get an answer from the language model just now. "
        f"Please try again in a moment. (reference: run {run_id})"
    )
    try:
        await surface.fail(text)
    except Exception:
        log.exception("run %s: could not post the apology either", run_id)
