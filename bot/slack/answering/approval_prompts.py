"""Asking the requesting user to approve something, with Approve / Deny buttons only they can use.

`ask()` stores an Approval, shows the question ephemerally to the requester (Block Kit buttons),
and waits until it is decided or expires; the listener in bot/slack/listeners/clicks/approval_buttons.py
records clicks. The decision, and who made it, is also written to the run's steps. Any process
can take the click: the database, not memory, carries the decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.db.models import Approval
from bot.db.queries.approvals import DECIDED
from bot.runtime import Runtime
from bot.slack.output.calls import SLACK_FAILED, call
from bot.slack.output.safe_text import neutralize, neutralize_blocks
from tools.toolkit.context import ApprovalDecision, RunTrace, ToolContext
from tools.toolkit.errors import InvariantError

log = logging.getLogger(__name__)

APPROVE, DENY = "approval_approve", "approval_deny"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Where:
    """Where the requester is talking to the bot: the question is shown there, only to them."""

    team: str | None
    channel: str
    thread_ts: str | None
    user: str


def approval_blocks(approval: Approval) -> list[dict[str, Any]]:
    value = str(approval.id)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": approval.summary}},
        {
            "type": "actions",
            "block_id": f"approval_{approval.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": DENY,
                    "text": {"type": "plain_text", "text": "Deny"},
                    "style": "danger",
                    "value": value,
                },
            ],
        },
    ]


async def ask(
    rt: Runtime,
    where: Where,
    trace: RunTrace,
    *,
    kind: str,
    summary: str,
    detail: dict[str, Any],
    run_id: int | None = None,
    ttl: float | None = None,
) -> ApprovalDecision:
    """Put the question to `where.user` and wait for the answer (or the expiry).

    `kind` names what is asked ("egress"; other callers add theirs), `detail` is what the caller
    needs to act on the answer; both are stored with the approval and on the run's steps.
    """
    approval = await rt.db.approvals.create(
        requester_id=where.user,
        kind=kind,
        summary=summary,
        detail=json.dumps(detail),
        ttl=ttl if ttl is not None else rt.settings.egress_approval_seconds,
        run_id=run_id,
        team_id=where.team,
        channel_id=where.channel,
        thread_ts=where.thread_ts,
    )
    if approval.id is None:
        raise InvariantError("a stored approval has no id")
    step = {"approval": approval.id, **detail}
    await trace.step("approval", f"{kind} asked", arguments=json.dumps({**step, "requester": where.user}))
    kwargs: dict[str, Any] = {"channel": where.channel, "user": where.user, "text": neutralize(summary)}
    kwargs["blocks"] = neutralize_blocks(approval_blocks(approval))
    if where.thread_ts:
        kwargs["thread_ts"] = where.thread_ts
    try:
        await call(rt.slack.chat_postEphemeral, **kwargs)
    except SLACK_FAILED:
        log.exception("approval %s: could not ask %s", approval.id, where.user)
        await rt.db.approvals.expire(approval.id)
        decision = ApprovalDecision("unavailable")
    else:
        decision = await wait_for_decision(rt, approval.id)
    await trace.step(
        "approval",
        f"{kind} {decision.state}",
        arguments=json.dumps({**step, "decision": decision.state, "by": decision.by}),
        error=None
        if decision.approved
        else f"{decision.state}" + (f" by {decision.by}" if decision.by else ""),
    )
    return decision


async def wait_for_decision(rt: Runtime, approval_id: int) -> ApprovalDecision:
    """Poll the stored approval until someone decided it or its time ran out."""
    while True:
        row = await rt.db.approvals.get(approval_id)
        if row is None:
            return ApprovalDecision("unavailable")
        if row.state in DECIDED:
            return ApprovalDecision(row.state, row.decided_by)
        if row.expires_at <= time.time():
            await rt.db.approvals.expire(approval_id)
            continue  # re-read: a click may have landed just before the expiry
        await asyncio.sleep(POLL_SECONDS)


class SlackApprover:
    """The egress guard's approver (tools.toolkit.context.Approver) for one run and one requester."""

    def __init__(self, rt: Runtime, where: Where, run_id: int | None) -> None:
        self.rt, self.where, self.run_id = rt, where, run_id
        self._lock = asyncio.Lock()  # one question at a time: parallel calls wait for the answer

    async def approve(
        self, ctx: ToolContext, *, tool: str, host: str, url: str, sources: list[str]
    ) -> ApprovalDecision:
        async with self._lock:
            if host in ctx.flow.approved_hosts:  # approved while this call waited its turn
                return ApprovalDecision("approved", self.where.user)
            read = ", ".join(f"<#{s.removeprefix('slack:')}>" for s in sources if s.startswith("slack:"))
            shown = url if len(url) <= 300 else url[:299] + "…"
            summary = (
                f"*Send data outside the workspace?* This answer has read non-public content ({read}). "
                f"The model now wants `{tool}` to contact *{host}*:\n```{shown}```\n"
                f"Only you can decide. Without an answer in "
                f"{self.rt.settings.egress_approval_seconds:g} s nothing is sent."
            )
            detail = {"tool": tool, "host": host, "url": url, "sources": sources}
            return await ask(
                self.rt,
                self.where,
                ctx.trace,
                kind="egress",
                summary=summary,
                detail=detail,
                run_id=self.run_id,
            )
