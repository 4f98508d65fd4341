"""The message shortcut "Summarize this thread" and /summarize used inside a thread.

The shortcut answers only the person who used it (an ephemeral message in the thread); reading
the thread obeys the same rule as /summarize: only for members of the channel.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.db.trace import DbTrace
from bot.runtime import Runtime
from bot.slack.calls import call
from orchestrators.llm import AgentError
from orchestrators.workflows.thread_summary import summarize_thread
from tools.registry import ToolError

log = logging.getLogger(__name__)

CALLBACK_ID = "summarize_thread"


async def thread_summary(
    rt: Runtime, *, team: str, channel: str, user: str, thread_ts: str, trigger: str
) -> str:
    """Run the thread summary as a traced run; every outcome is a sentence for the user."""
    run = await rt.db.runs.start(
        trigger,
        team_id=team,
        channel_id=channel,
        thread_ts=thread_ts,
        user_id=user,
        model=rt.settings.openai_model if rt.llm else None,
    )
    assert run.id is not None
    ctx = rt.tool_context(DbTrace(rt.db, run.id), team=team, user=user, channel=channel, thread_ts=thread_ts)
    started = time.perf_counter()
    try:
        reply = await summarize_thread(ctx, channel, thread_ts)
        status, error, text = "ok", None, reply.text
    except (ToolError, AgentError) as exc:
        status, error, text = "failed", str(exc), f"I couldn't summarize that thread: {exc}"
    except Exception as exc:
        log.exception("run %s: thread summary failed", run.id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        text = f"Sorry, summarizing that thread failed unexpectedly (reference: run {run.id})."
    u = ctx.usage
    usage = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "llm_calls": u.llm_calls,
    }
    await rt.db.runs.finish(run.id, status, error=(error or "")[:2000] or None, **usage)
    log.info("run %s: thread summary %s in %.1f s", run.id, status, time.perf_counter() - started)
    return text


def register(app: AsyncApp, rt: Runtime) -> None:
    async def summarize_for(body: dict[str, Any], respond: Any) -> None:
        channel = (body.get("channel") or {}).get("id", "")
        user = (body.get("user") or {}).get("id", "")
        message = body.get("message") or {}
        root = message.get("thread_ts") or message.get("ts") or body.get("message_ts", "")
        team = (body.get("team") or {}).get("id") or ""
        text = await thread_summary(
            rt, team=team, channel=channel, user=user, thread_ts=root, trigger="shortcut"
        )
        try:
            await call(rt.slack.chat_postEphemeral, channel=channel, user=user, thread_ts=root, text=text)
        except Exception:  # not in the channel, say: the response_url still reaches the user
            await respond(response_type="ephemeral", replace_original=False, text=text)

    @app.shortcut(CALLBACK_ID)
    async def on_shortcut(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        rt.tasks.spawn(summarize_for(body, respond), name=f"thread summary {body.get('message_ts')}")
