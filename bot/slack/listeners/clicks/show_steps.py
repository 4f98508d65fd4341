""" "Show steps" under an answer: the run's trace, shown only to the person who clicked."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.db.models import Run
from bot.db.queries.runs import run_ref
from bot.runtime import Runtime
from bot.slack.output.calls import call
from bot.slack.output.render import STEPS_ACTION
from bot.slack.output.steps_view import own_tool_names, steps_text
from tools.guards.audience import may_read

log = logging.getLogger(__name__)
NOT_FOUND = "I can't find the steps of that answer."
NOT_READABLE = "You can't see the steps of that answer: you can't read the conversation it was given in."


async def _may_read_sources(rt: Runtime, run: Run, user: str) -> bool:
    """The audience rule for a run's values: `user` may read every non-public place it read."""
    for source in (run.sources or "").split():
        channel = source.split(":", 1)[-1]
        if not (
            await may_read(rt.slack, rt.memberships, team=run.team_id, source=channel, user=user)
        ).allowed:
            return False
    return True


def register(app: AsyncApp, rt: Runtime) -> None:
    async def show(body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        user = body["user"]["id"]
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
        value = str(action.get("value", ""))
        run_id = await rt.db.runs.of_ref(value)
        run = await rt.db.runs.get(run_id) if run_id is not None else None
        # The button only ever sits under its own run's answer; a forged value naming a run of
        # another channel gets nothing, so no trace leaves the channel it was made in.
        if run is None or run.id is None or not channel or run.channel_id != channel:
            log.warning("show steps: no run %s in %s", value if run_ref(value) else "?", channel)
            text = NOT_FOUND
        else:
            # A signed click is no proof of membership: anyone can send one naming any channel.
            verdict = await may_read(rt.slack, rt.memberships, team=run.team_id, source=channel, user=user)
            if not verdict.allowed:
                log.warning("show steps: %s may not read %s (run %s)", user, channel, run.id)
                # An ephemeral to a non-member is refused by Slack; the click's response_url is not.
                try:
                    await respond(response_type="ephemeral", replace_original=False, text=NOT_READABLE)
                except Exception:  # an expired or forged response_url: there is no one to tell
                    log.warning("show steps: could not tell %s no", user, exc_info=True)
                return
            known = own_tool_names() | set((await rt.tools()).tools)
            cleared = await _may_read_sources(rt, run, user)
            steps = await rt.db.runs.steps(run.id)
            text = steps_text(run, steps, viewer=user, known_tools=known, cleared=cleared)
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
    async def on_show_steps(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        rt.tasks.spawn(show(body, action, respond), name="show steps")
