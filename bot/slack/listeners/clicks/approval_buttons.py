"""Approve / Deny clicks: only the requester decides, once, before the question expires."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.db.queries.parked import WRITE_KIND
from bot.runtime import Runtime
from bot.slack.answering.approval_prompts import APPROVE, DENY
from bot.slack.answering.approved_writes import settle_later

log = logging.getLogger(__name__)

REFUSALS = {
    "not_yours": "Only <@{requester}> can decide this request.",
    "expired": "This request expired before it was decided; nothing was sent.",
    "missing": "I don't know this request any more.",
}


def register(app: AsyncApp, rt: Runtime) -> None:
    async def decide(body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        user = body["user"]["id"]
        value = str(action.get("value", ""))
        if not value.isdigit():
            log.warning("approval click with an unknown value (%d characters)", len(value))
            return
        outcome, row = await rt.db.approvals.decide(int(value), user, approve=action["action_id"] == APPROVE)
        if outcome in ("approved", "denied"):
            verb = "Approved" if outcome == "approved" else "Denied"
            await respond(replace_original=True, text=f"{verb} by <@{user}>.")
            if row is not None and row.kind == WRITE_KIND:
                await settle_later(rt, row)  # a parked write call: a job runs it (or says it won't)
            return
        if outcome == "expired" and row is not None and row.kind == WRITE_KIND:
            await settle_later(rt, row)
        if outcome.startswith("already_"):
            text = f"This request was already {outcome.removeprefix('already_')}."
        else:
            text = REFUSALS[outcome].format(requester=row.requester_id if row else "")
        await respond(response_type="ephemeral", replace_original=False, text=text)

    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Any) -> None:
        await ack()
        if not body.get("response_url"):  # our buttons sit in messages, whose clicks always carry one
            log.info("approval click without a response_url; ignored")
            return
        rt.tasks.spawn(decide(body, action, respond), name="approval click")

    app.action(APPROVE)(on_click)
    app.action(DENY)(on_click)
