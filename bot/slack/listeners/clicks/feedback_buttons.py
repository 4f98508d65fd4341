"""Thumbs up/down under LLM answers: stored with the run, acknowledged to the clicker only."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.db.queries.runs import run_ref
from bot.runtime import Runtime
from bot.slack.output.calls import call
from bot.slack.output.render import FEEDBACK_ACTION

log = logging.getLogger(__name__)


def parse_value(value: str) -> tuple[str, str] | None:
    """`good:42` -> ("good", "42"), `bad:j7` -> ("bad", "j7"); anything else is not ours."""
    verdict, _, run = value.partition(":")
    if verdict in ("good", "bad") and run_ref(run) is not None:
        return verdict, run
    return None


def register(app: AsyncApp, rt: Runtime) -> None:
    async def record(body: dict[str, Any], action: dict[str, Any]) -> None:
        parsed = parse_value(action.get("value", ""))
        user = body["user"]["id"]
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        run_id = await rt.db.runs.of_ref(parsed[1]) if parsed is not None else None
        if parsed is None or run_id is None or not await rt.db.feedback.save(run_id, user, parsed[0]):
            log.warning("feedback with an unknown value (%d characters)", len(str(action.get("value", ""))))
            return
        thread = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
        kwargs: dict[str, Any] = {"channel": channel, "user": user}
        if thread:
            kwargs["thread_ts"] = thread
        kwargs["text"] = (
            "Thanks! Glad it helped."
            if parsed[0] == "good"
            else "Thanks for telling me; I'll use it to improve."
        )
        await call(rt.slack.chat_postEphemeral, **kwargs)

    @app.action(FEEDBACK_ACTION)
    async def on_feedback(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        rt.tasks.spawn(record(body, action), name="feedback")
