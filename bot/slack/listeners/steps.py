""" "Show steps" under an answer: the run's trace, shown only to the person who clicked."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.calls import call
from bot.slack.render import STEPS_ACTION
from bot.slack.steps_view import steps_text

log = logging.getLogger(__name__)


def register(app: AsyncApp, rt: Runtime) -> None:
    async def show(body: dict[str, Any], action: dict[str, Any]) -> None:
        user = body["user"]["id"]
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
        value = str(action.get("value", ""))
        run = await rt.db.runs.get(int(value)) if value.isdigit() else None
        # The button only ever sits under its own run's answer; a forged value naming a run of
        # another channel gets nothing, so no trace leaves the channel it was made in.
        if run is None or run.id is None or run.channel_id != channel:
            log.warning("show steps: no run %s in %s", value if value.isdigit() else "?", channel)
            text = "I can't find the steps of that answer."
        else:
            text = steps_text(run, await rt.db.runs.steps(run.id), viewer=user)
        kwargs: dict[str, Any] = {
            "channel": channel,
            "user": user,
            "text": text[:300],
            "blocks": [{"type": "markdown", "text": text}],
        }
        if thread:
            kwargs["thread_ts"] = thread
        await call(rt.slack.chat_postEphemeral, **kwargs)

    @app.action(STEPS_ACTION)
    async def on_show_steps(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        rt.tasks.spawn(show(body, action), name="show steps")
