"""Slash commands as jobs of the work engine: recorded before the ack, done once across crashes.

Slack never retries a slash command, so a process killed between the ack and the reply would
lose it. Each command is a `command` job recorded before the ack; if the process running it
dies, the engine gives it to another attempt (the reply goes to the command's response_url,
which Slack keeps valid for 30 minutes).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.db.database import database_unavailable
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.output.safe_text import quiet_respond
from bot.work import Job

log = logging.getLogger(__name__)

Runner = Callable[[Runtime, dict[str, Any], Any], Awaitable[None]]  # (rt, command body, respond)

KIND = "command"
RESPONSE_URL_LIFETIME = timedelta(minutes=25)  # Slack's is 30; leave time to answer
RUNNER = "_switchboard_kind"  # which runner, stored beside Slack's own fields
TAG = "_switchboard_tag"  # given to the runner: marks what it posts (answer metadata)
REDO = "_switchboard_redo"  # given to the runner: a process died running this job before
GAVE_UP = "Sorry, I was restarted several times while working on `{command}` and gave up. Please try again."
FAILED = "Sorry, `{command}` failed on my side. Please try again in a moment."


async def accept_command(rt: Runtime, kind: str, body: dict[str, Any]) -> None:
    """Record the command (call before the ack); the engine runs it."""
    trigger = str(body.get("trigger_id") or uuid.uuid4())
    _, new = await rt.work.submit(KIND, f"command:{trigger}", {**body, RUNNER: kind})
    if not new:
        log.info("skipping a repeated delivery of a %s command", kind)


async def run_command(rt: Runtime, job: Job, runners: Mapping[str, Runner]) -> None:
    body = dict(job.payload)
    install.serve(str(body.get("team_id", "")))
    respond = _respond(body)
    command = str(body.get("command", ""))
    if job.redo:
        await rt.db.runs.interrupt_command(
            command,
            team=str(body.get("team_id", "")),
            user=str(body.get("user_id", "")),
            channel=str(body.get("channel_id", "")),
            since=job.created_at,
            error="its process stopped; the command was redone",
        )
    runner = runners[body.pop(RUNNER)]
    try:
        await runner(rt, {**body, TAG: f"command{job.id}", REDO: job.redo}, respond)
    except Exception as exc:  # the command job's boundary; re-raised
        if not database_unavailable(exc):  # the database away: the engine redoes it, nothing to say
            await _tell(respond, FAILED.format(command=command or "the command"))
        raise  # the engine logs it and records the job failed


async def give_up_command(rt: Runtime, job: Job) -> None:
    install.serve(str(job.payload.get("team_id", "")))
    await _tell(_respond(job.payload), GAVE_UP.format(command=job.payload.get("command") or "the command"))


def register(rt: Runtime, runners: Mapping[str, Runner]) -> None:
    rt.work.kind(
        KIND,
        lambda job: run_command(rt, job, runners),
        give_up=lambda job: give_up_command(rt, job),
        max_age=RESPONSE_URL_LIFETIME,
    )


def _respond(body: Mapping[str, Any]) -> Any:
    return quiet_respond(AsyncRespond(response_url=body.get("response_url")))


async def _tell(respond: Any, text: str) -> None:
    try:
        await respond(response_type="ephemeral", text=text, replace_original=False)
    except Exception:  # last words: nothing left to do
        log.exception("could not reply to a command")
