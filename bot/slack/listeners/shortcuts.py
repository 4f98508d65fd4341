"""The message shortcut "Summarize this thread" and /summarize used inside a thread.

The shortcut answers only the person who used it (an ephemeral message in the thread); reading
the thread obeys the same rule as /summarize: only for members of the channel.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.output.calls import SLACK_FAILED, call
from bot.slack.output.safe_text import quiet_respond
from bot.work.traced_run import RunFailed, traced_run
from orchestrators.workflows.thread_summary import summarize_thread
from tools.toolkit.errors import UserFacingError

log = logging.getLogger(__name__)

CALLBACK_ID = "summarize_thread"


class CapReached(UserFacingError):
    """A daily token cap is used up: the text says so and when it resets."""


async def thread_summary(
    rt: Runtime,
    *,
    team: str,
    channel: str,
    user: str,
    thread_ts: str,
    trigger: str,
    only_for: str | None = None,
) -> str:
    """Run the thread summary as a traced run; every outcome is a sentence for the user.

    `only_for`: the summary is shown to this person alone (ephemeral); the privacy check uses it.
    A daily cap's refusal raises CapReached (it is for the asker's eyes only).
    """
    here = await rt.db.channel_settings.effective(team, channel)
    try:
        async with traced_run(
            rt,
            trigger,
            team=team,
            channel=channel,
            user=user,
            thread_ts=thread_ts,
            reply_thread_ts=thread_ts,
            caps=here,
        ) as run:
            if refusal := run.allowance.refusal:
                run.finish("refused", error=refusal)
            else:
                run.ctx.ephemeral_to = only_for
                reply = await summarize_thread(run.ctx, channel, thread_ts)
                run.finish("ok", "; ".join(reply.notes) or None)
    except RunFailed as failed:
        if failed.expected:
            return f"I couldn't summarize that thread: {failed.reason}"
        return f"Sorry, summarizing that thread failed unexpectedly (reference: run {failed.run_id})."
    if refusal:
        raise CapReached(refusal)
    return reply.text


def register(app: AsyncApp, rt: Runtime) -> None:
    async def summarize_for(body: dict[str, Any], respond: Any) -> None:
        channel = (body.get("channel") or {}).get("id", "")
        user = (body.get("user") or {}).get("id", "")
        message = body.get("message") or {}
        root = message.get("thread_ts") or message.get("ts") or body.get("message_ts", "")
        team = (body.get("team") or {}).get("id") or ""
        if not (channel and user and root):  # a global shortcut by this name: no thread to summarize
            return
        try:
            text = await thread_summary(
                rt, team=team, channel=channel, user=user, thread_ts=root, trigger="shortcut", only_for=user
            )
        except CapReached as refused:
            text = refused.user_message
        try:
            await call(rt.slack.chat_postEphemeral, channel=channel, user=user, thread_ts=root, text=text)
        except SLACK_FAILED as exc:  # not in the channel, say: the response_url still reaches the user
            if not body.get("response_url"):
                log.warning("thread summary: could not show it to %s: %s", user, type(exc).__name__)
                return
            await quiet_respond(respond)(response_type="ephemeral", replace_original=False, text=text)

    @app.shortcut(CALLBACK_ID)
    async def on_shortcut(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        rt.tasks.spawn(summarize_for(body, respond), name=f"thread summary {body.get('message_ts')}")
