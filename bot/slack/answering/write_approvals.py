"""Write tools wait for the requesting user's approval, parked in the database, not in memory.

A write call (an MCP server in `write` mode, `call_api` with a body or a non-GET method) is not
run when the model asks: it becomes an Approval of kind "write" holding the exact tool and
arguments, the question goes to the requester (Approve / Deny), and the run answers at once that
it is waiting. What happens after the click is `approved_writes`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bot.db.queries.parked import WRITE_KIND
from bot.runtime import Runtime
from bot.slack.answering.approval_prompts import Where, approval_blocks
from bot.slack.output.calls import SLACK_FAILED, call
from bot.slack.output.safe_text import neutralize, neutralize_blocks

log = logging.getLogger(__name__)

PARKED = (
    "Not run yet: {tool} changes things outside Switchboard, so <@{user}> has been asked to "
    "approve this exact call (Approve / Deny). Tell them it is waiting for their decision; the "
    "outcome will be posted here. Do not call it again."
)
MAX_SHOWN_ARGUMENTS = 2_500


def shown(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, ensure_ascii=False, indent=1)
    return text if len(text) <= MAX_SHOWN_ARGUMENTS else text[: MAX_SHOWN_ARGUMENTS - 1] + "…"


class ParkedWrites:
    """tools.toolkit.context.Approvals for one run: park each write call and ask its requester."""

    def __init__(self, rt: Runtime, where: Where, run_id: int, conversation: str | None) -> None:
        self.rt, self.where, self.run_id = rt, where, run_id
        self.conversation = conversation  # the conversation's thread key, to continue it after Approve

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None:
        minutes = self.rt.settings.write_approval_seconds / 60
        summary = (
            f"*Run `{tool}`?* The model wants to make this change for you, with exactly these "
            f"arguments:\n```{shown(arguments)}```\nOnly you can decide; without an answer in "
            f"{minutes:g} min it is not run."
        )
        detail = {"tool": tool, "arguments": arguments, "conversation": self.conversation}
        approval = await self.rt.db.approvals.create(
            requester_id=self.where.user,
            kind=WRITE_KIND,
            summary=summary,
            detail=json.dumps(detail),
            ttl=self.rt.settings.write_approval_seconds,
            run_id=self.run_id,
            team_id=self.where.team,
            channel_id=self.where.channel,
            thread_ts=self.where.thread_ts,
        )
        kwargs: dict[str, Any] = {"channel": self.where.channel, "user": self.where.user}
        kwargs |= {"text": neutralize(summary)[:300], "blocks": neutralize_blocks(approval_blocks(approval))}
        if self.where.thread_ts:
            kwargs["thread_ts"] = self.where.thread_ts
        try:
            await call(self.rt.slack.chat_postEphemeral, **kwargs)
        except SLACK_FAILED:
            log.exception("approval %s: could not ask %s", approval.id, self.where.user)
            await self.rt.db.approvals.expire(approval.id or 0)
            await self.rt.db.parked.claim(approval.id or 0, "expired")
            return f"{tool} needs approval, and I could not ask for it; it was not run."
        return PARKED.format(tool=tool, user=self.where.user)
