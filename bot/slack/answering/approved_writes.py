"""A decided write approval acted on once: Approve runs that exact call and continues the
conversation with its result; Deny or expiry posts what was not done.

A click (or the sweep, for expiries) records an `approval` job of the work engine (bot/work),
which any process runs, also after a restart. Settling is also claimed once in the database, so
the call runs at most once, even when a process dies between running it and recording that it did.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from typing import Any

from bot.db.models import Approval
from bot.logging_setup import message_text
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.answering.approval_prompts import SlackApprover, Where
from bot.slack.answering.conversation import Turn
from bot.slack.answering.turns import take_turn
from bot.slack.output.calls import call
from bot.slack.output.render import post_answer
from bot.work import Job
from bot.work.traced_run import Askers, RunFailed, traced_run
from tools.toolkit.errors import InvariantError
from tools.toolkit.registry import ToolResult

log = logging.getLogger(__name__)


class Preapproved:
    """The approval of one exact call, used when running it after Approve."""

    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        self.tool, self.arguments = tool, arguments

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None:
        if (tool, arguments) == (self.tool, self.arguments):
            return None
        return f"{tool} was not part of what the user approved; it was not run."


KIND = "approval"


async def settle_later(rt: Runtime, approval: Approval) -> None:
    """Record the settling as a job (once per approval): it survives this process."""
    await rt.work.submit(KIND, f"approval:{approval.id}", {"approval": approval.id})


async def run_settle(rt: Runtime, job: Job) -> None:
    approval = await rt.db.approvals.get(int(job.payload["approval"]))
    if approval is not None:
        await settle(rt, approval)


def register(rt: Runtime) -> None:
    rt.work.kind(KIND, lambda job: run_settle(rt, job), max_age=timedelta(days=7))


async def settle(rt: Runtime, approval: Approval) -> None:
    """Act on a decided (or expired) write approval, once across every process."""
    approval_id = approval.id
    install.serve(approval.team_id or "")
    if approval_id is None:
        raise InvariantError("a stored approval has no id")
    outcome = approval.state if approval.state != "pending" else "expired"
    if approval.state == "pending":
        await rt.db.approvals.expire(approval_id)
        fresh = await rt.db.approvals.get(approval_id)
        if fresh is not None and fresh.state != "expired":  # decided at the last moment
            approval, outcome = fresh, fresh.state
    if not await rt.db.parked.claim(approval_id, outcome):
        return
    detail = json.loads(approval.detail)
    tool, arguments = detail["tool"], detail["arguments"]
    where = Where(approval.team_id, approval.channel_id or "", approval.thread_ts, approval.requester_id)
    if outcome == "approved":
        await _run_approved(rt, approval, where, tool, arguments, detail.get("conversation"))
        return
    why = f"<@{approval.decided_by}> denied it" if outcome == "denied" else "nobody approved it in time"
    text = f"I did not run `{tool}` with `{json.dumps(arguments, ensure_ascii=False)[:500]}`: {why}."
    await _remember(rt, where, detail.get("conversation"), text, approval.run_id)
    await post_answer(rt.slack, where.channel, where.thread_ts, text, None, call)


async def _run_approved(
    rt: Runtime,
    approval: Approval,
    where: Where,
    tool: str,
    arguments: dict[str, Any],
    conversation: str | None,
) -> None:
    try:
        async with traced_run(
            rt,
            "approval",
            team=where.team or "",
            channel=where.channel,
            user=where.user,
            thread_ts=conversation,
            reply_thread_ts=where.thread_ts,
            askers=Askers(
                approver=lambda run_id: SlackApprover(rt, where, run_id),
                approvals=lambda _run_id: Preapproved(tool, arguments),
            ),
        ) as run:
            result = await (await rt.tools()).run(tool, json.dumps(arguments), run.ctx)
            run.finish("ok" if result.ok else "failed", error=result.error)
    except RunFailed as failed:
        log.warning("approval %s: running %s failed: %s", approval.id, tool, message_text(failed.reason))
        result = ToolResult(tool, False, json.dumps({"error": failed.reason}), failed.reason)
    outcome = result.content if result.ok else f"it failed: {result.error}"
    if conversation is None:  # a slash command's run: no conversation to continue, say what happened
        text = f"Approved by <@{where.user}>: ran `{tool}`. " + (
            f"Result ({len(result.content):,} characters) recorded in run {run.id}." if result.ok else outcome
        )
        await post_answer(rt.slack, where.channel, where.thread_ts, text, None, call)
        return
    note = (
        f"(Switchboard: <@{where.user}> approved `{tool}` and it ran with the approved arguments. "
        f'Its result: <tool_output tool="{tool}">\n{outcome}\n</tool_output>\n'
        "Tell the user what was done.)"
    )
    await take_turn(
        rt,
        Turn(
            team=where.team or "",
            channel=where.channel,
            user=where.user,
            text=note,
            ts=f"approval.{approval.id}",
            thread_ts=conversation,
            reply_thread_ts=where.thread_ts,
            trigger="approval",
        ),
    )


async def _remember(
    rt: Runtime, where: Where, conversation: str | None, text: str, run_id: int | None
) -> None:
    """Put what was not done in the conversation, so a follow-up question knows it."""
    if conversation is None:
        return
    convo = await rt.db.conversations.find(where.team or "", where.channel, conversation)
    if convo is not None and convo.id is not None:
        await rt.db.conversations.add_messages(
            convo.id, [{"role": "assistant", "content": text}], run_id=run_id
        )


async def sweep(rt: Runtime) -> int:
    """Settle what no click settled: expiries, and decisions a crashed process left unrecorded."""
    done = 0
    for approval in await rt.db.parked.unsettled():
        if approval.state == "pending" and approval.expires_at > time.time():
            continue
        await settle_later(rt, approval)
        done += 1
    return done


async def sweep_forever(rt: Runtime, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await sweep(rt)
        except Exception:  # a periodic job's boundary
            log.warning("sweeping parked write calls failed", exc_info=True)
