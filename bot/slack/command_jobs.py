"""Slash commands done exactly once, across crashes: recorded before the ack, worked under a lease.

Slack never retries a slash command, so a process killed between the ack and the reply would
lose it. Each command is a `commandjob` row written before the ack; the process that takes the
job's lease runs it and renews the lease meanwhile; if it dies, any process's recovery sweep
takes the expired lease and runs the job again (the reply goes to the command's response_url,
which Slack keeps valid for 30 minutes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.db.work import MAX_ATTEMPTS
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.safe_text import quiet_respond

log = logging.getLogger(__name__)

Runner = Callable[[Runtime, dict[str, Any], Any], Awaitable[None]]  # (rt, command body, respond)

RESPONSE_URL_LIFETIME = timedelta(minutes=25)  # Slack's is 30; leave time to answer
KIND = "_switchboard_kind"  # which runner, stored beside Slack's own fields
TAG = "_switchboard_tag"  # given to the runner: marks what it posts (answer metadata)
REDO = "_switchboard_redo"  # given to the runner: a process died running this job before
GAVE_UP = "Sorry, I was restarted several times while working on `{command}` and gave up. Please try again."
FAILED = "Sorry, `{command}` failed on my side. Please try again in a moment."


def job_lease(job_id: int) -> str:
    return f"command:{job_id}"


async def accept_command(rt: Runtime, kind: str, body: dict[str, Any], runners: Mapping[str, Runner]) -> None:
    """Record the command (call before the ack), then run it in a tracked task."""
    trigger = str(body.get("trigger_id") or uuid.uuid4())
    job_id = await rt.db.command_jobs.add(trigger, {**body, KIND: kind})
    if job_id is None:
        log.info("skipping a repeated delivery of command %s", trigger)
        return
    rt.tasks.spawn(run_job(rt, job_id, runners), name=f"{body.get('command')} job {job_id}")


async def run_job(rt: Runtime, job_id: int, runners: Mapping[str, Runner]) -> None:
    """Run one job if its lease is free (or expired); a job someone else holds is left to them."""
    key, owner = job_lease(job_id), f"{rt.db.leases.owner}/command{job_id}/{uuid.uuid4().hex[:6]}"
    ttl = rt.settings.work_lease_seconds
    if not await rt.db.leases.acquire(key, owner, ttl):
        return
    async with rt.db.leases.kept(key, owner, ttl):
        job = await rt.db.command_jobs.get(job_id)
        if job is None or job.state not in ("pending", "running"):
            return
        body = _body(job.body)
        install.serve(str(body.get("team_id", "")))
        respond = quiet_respond(AsyncRespond(response_url=body.get("response_url")))
        attempt = await rt.db.command_jobs.start(job_id)
        if attempt > MAX_ATTEMPTS:
            await rt.db.command_jobs.set_state(job_id, "interrupted")
            await _tell(respond, GAVE_UP.format(command=body.get("command", "the command")))
            return
        if attempt > 1:
            log.warning("command job %s: redoing it after its process died", job_id)
            await rt.db.runs.interrupt_command(
                str(body.get("command", "")),
                team=str(body.get("team_id", "")),
                user=str(body.get("user_id", "")),
                channel=str(body.get("channel_id", "")),
                since=job.created_at,
                error="its process died; the command was redone",
            )
        await _run(rt, job_id, {**body, TAG: f"command{job_id}", REDO: attempt > 1}, respond, runners)


async def _run(
    rt: Runtime, job_id: int, body: dict[str, Any], respond: Any, runners: Mapping[str, Runner]
) -> None:
    try:
        await runners[body.pop(KIND)](rt, body, respond)
    except asyncio.CancelledError:
        await asyncio.shield(rt.db.command_jobs.set_state(job_id, "interrupted"))
        raise
    except Exception:
        log.exception("command job %s failed", job_id)
        await rt.db.command_jobs.set_state(job_id, "failed")
        await _tell(respond, FAILED.format(command=body.get("command", "the command")))
    else:
        await rt.db.command_jobs.set_state(job_id, "done")


async def recover_commands(rt: Runtime, runners: Mapping[str, Runner]) -> int:
    """Jobs whose process died (their lease expired or was never renewed) run again here."""
    started = 0
    for job_id in await rt.db.command_jobs.unfinished(RESPONSE_URL_LIFETIME):
        lease = await rt.db.leases.holder(job_lease(job_id))
        if lease is not None and lease.expires_at > time.time():
            continue
        rt.tasks.spawn(run_job(rt, job_id, runners), name=f"recover command job {job_id}")
        started += 1
    return started


def _body(text: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(text)
    return body


async def _tell(respond: Any, text: str) -> None:
    try:
        await respond(response_type="ephemeral", text=text, replace_original=False)
    except Exception:
        log.exception("could not reply to a command")
