"""Summarize one thread (the "Summarize this thread" shortcut, /summarize inside a thread)."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError

from orchestrators.workflows.base import WorkflowReply
from orchestrators.workflows.summarize import chunks_of, transcript
from tools.context import ToolContext
from tools.read_channel import _explain, ensure_may_show, ensure_member, user_names
from tools.registry import ToolError
from tools.summarize import summarize

MAX_MESSAGES = 5_000
STYLE = (
    "Summarize this Slack thread for someone who did not read it: the question or topic, what was "
    "decided, what is still open, and who said what (use the names shown). Short bullet points."
)
COMBINE = "These are summaries of consecutive parts of one Slack thread. Combine them into one. Bullets."


async def read_thread(ctx: ToolContext, channel_id: str, thread_ts: str) -> list[dict[str, Any]]:
    """The parent and every reply, oldest first, paginated (capped at MAX_MESSAGES)."""
    if ctx.slack is None:
        raise ToolError("Slack is not available here, so threads cannot be read")
    out: list[dict[str, Any]] = []
    cursor = None
    while len(out) < MAX_MESSAGES:
        try:
            page = await ctx.slack.conversations_replies(
                channel=channel_id, ts=thread_ts, limit=200, cursor=cursor
            )
        except SlackApiError as exc:
            raise ToolError(_explain(exc, channel_id)) from None
        out += [m if m["ts"] == thread_ts else {**m, "_reply": True} for m in page["messages"]]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return out[:MAX_MESSAGES]


async def summarize_thread(ctx: ToolContext, channel_id: str, thread_ts: str) -> WorkflowReply:
    """Only for people in the channel, shown only where everyone may read it (the privacy rule);
    the model appears only in the summarize steps."""
    await ensure_member(ctx, channel_id, channel_id)
    await ensure_may_show(ctx, channel_id)
    messages = await read_thread(ctx, channel_id, thread_ts)
    if not messages:
        return WorkflowReply("That thread is empty.", notes=["empty"])
    names = await user_names(ctx, {m["user"] for m in messages if m.get("user")}, {})
    replies = sum(1 for m in messages if m.get("_reply"))
    head = f"*Thread summary* ({replies} {'reply' if replies == 1 else 'replies'}, {len(names)} people)"
    if ctx.llm is None:
        return WorkflowReply(head + "\n\n_No language model is configured, so only the counts._")
    chunks = [text for _, text in chunks_of(transcript(messages, names))]
    parts = [(await summarize(ctx, c, STYLE)).text for c in chunks]
    if len(parts) > 1:
        joined = "\n\n".join(f"Part {i + 1}:\n{p}" for i, p in enumerate(parts))
        parts = [(await summarize(ctx, joined, COMBINE)).text]
    return WorkflowReply(f"{head}\n\n{parts[0]}")
