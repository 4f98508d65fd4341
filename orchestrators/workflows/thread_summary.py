"""Summarize one thread (the "Summarize this thread" shortcut, /summarize inside a thread).

A thread too long to summarize whole keeps its newest part (where the conclusion usually is)
plus its first message (the topic), and the summary says what was left out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestrators.workflows.base import WorkflowReply
from orchestrators.workflows.channel_summary import CHUNK_CHARS, _clock, chunks_of, transcript
from tools.read_channel import ensure_may_show, ensure_member, thread_pages, user_names
from tools.summarize import summarize
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError

MAX_MESSAGES = 5_000  # replies kept in memory: the newest ones
STYLE = (
    "Summarize this Slack thread for someone who did not read it: the question or topic, what was "
    "decided, what is still open, and who said what (use the names shown). Short bullet points."
)
COMBINE = "These are summaries of consecutive parts of one Slack thread. Combine them into one. Bullets."


@dataclass
class Thread:
    parent: dict[str, Any] | None = None
    replies: list[dict[str, Any]] = field(default_factory=list)  # the newest, oldest first
    total: int = 0  # replies in the thread, kept or not

    @property
    def left_out(self) -> int:
        return self.total - len(self.replies)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return ([self.parent] if self.parent else []) + self.replies


async def read_thread(ctx: ToolContext, channel_id: str, thread_ts: str, keep: int = MAX_MESSAGES) -> Thread:
    """The parent and the newest `keep` replies. Slack pages a thread oldest first, so every page
    is read and only the newest replies stay."""
    if ctx.slack is None:
        raise ToolError("Slack is not available here, so threads cannot be read")
    thread = Thread()
    newest: deque[dict[str, Any]] = deque(maxlen=keep)
    async for messages in thread_pages(ctx, channel_id, channel_id, thread_ts):
        for m in messages:
            if m["ts"] == thread_ts:
                thread.parent = m  # Slack may repeat the parent on every page
            else:
                newest.append({**m, "_reply": True})
                thread.total += 1
    thread.replies = list(newest)
    return thread


async def summarize_thread(ctx: ToolContext, channel_id: str, thread_ts: str) -> WorkflowReply:
    """Only for people in the channel, shown only where everyone may read it (the privacy rule);
    the model appears only in the summarize steps."""
    await ensure_member(ctx, channel_id, channel_id)
    await ensure_may_show(ctx, channel_id)
    thread = await read_thread(ctx, channel_id, thread_ts)
    messages = thread.messages
    if not messages:
        return WorkflowReply("That thread is empty.", notes=["empty"])
    names = await user_names(ctx, {m["user"] for m in messages if m.get("user")}, {})
    replies = thread.total
    head = f"*Thread summary* ({replies:,} {'reply' if replies == 1 else 'replies'}, {len(names)} people)"
    if ctx.llm is None:
        return WorkflowReply(head + "\n\n_No language model is configured, so only the counts._")
    lines = transcript(messages, names)
    chunks = chunks_of(lines)
    limit = max(1, ctx.settings.summarize_token_budget * 4 // CHUNK_CHARS)
    first_kept = thread.replies[0]["ts"] if thread.left_out and thread.replies else None
    if len(chunks) > limit:
        chunks = chunks[-limit:]
        first_kept = chunks[0][0]
        if thread.parent is not None:  # the topic stays, ahead of the newest part
            topic = transcript([thread.parent], names)[-1][1]
            chunks[0] = (first_kept, f"(the thread began with) {topic}\n[...]\n{chunks[0][1]}")
    parts = [(await summarize(ctx, text, STYLE)).text for _, text in chunks]
    if len(parts) > 1:
        joined = "\n\n".join(f"Part {i + 1}:\n{p}" for i, p in enumerate(parts))
        parts = [(await summarize(ctx, joined, COMBINE)).text]
    body = f"{head}\n\n{parts[0]}"
    if first_kept is not None:
        skipped = sum(1 for r in thread.replies if float(r["ts"]) < float(first_kept)) + thread.left_out
        note = (
            f"the thread is too long to summarize whole: this covers its first message and the "
            f"replies from {_clock(first_kept)} UTC on; the {skipped:,} older replies were left out"
        )
        return WorkflowReply(f"{body}\n\n_Note: {note}._", notes=[note])
    return WorkflowReply(body)
