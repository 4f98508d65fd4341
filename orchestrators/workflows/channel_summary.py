"""/summarize: read a whole period of a channel (threads included) and summarize it in chunks.

Short periods take one model call. Long ones are cut into chunks that fit the model's context,
summarized one by one, then combined; past a budget of chunks the newest part is covered and the
user is told. Who said what stays visible: lines carry speakers, grouped to keep prompts lean.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from orchestrators.workflows.base import WorkflowReply
from tools.read_channel import history, replies, user_names
from tools.summarize import summarize
from tools.toolkit.context import ToolContext
from tools.toolkit.errors import InvariantError

CHUNK_CHARS = 24_000  # about 6,000 tokens of conversation per model call
MAX_CHUNKS: int | None = None  # None: derived from ctx.settings.summarize_token_budget
GROUP = 12  # partial summaries combined per model call (a tree when there are many)
MAX_MESSAGES = 100_000
TOP_THREADS = 5

CHUNK_STYLE = (
    "Summarize this part of the Slack channel {channel} for someone who missed it: the topics, "
    "decisions, open questions and who said what (use the names shown). Bullet points, concise."
)
COMBINE_STYLE = (
    "These are summaries of consecutive parts of the Slack channel {channel}, oldest first. "
    "Combine them into one summary: topics, decisions, open questions, who said what. Bullets."
)


def _clock(ts: str) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%b %d %H:%M")


def transcript(messages: list[dict[str, Any]], names: dict[str, str]) -> list[tuple[str, str]]:
    """(ts, line): an hour header when the hour changes, a speaker once per run of messages."""
    lines: list[tuple[str, str]] = []
    last_hour, last_speaker = "", ""
    for m in messages:
        hour = _clock(m["ts"])[:-3]
        if hour != last_hour:
            lines.append((m["ts"], f"## {hour}:00 UTC"))
            last_hour, last_speaker = hour, ""
        speaker = names.get(m.get("user", ""), m.get("user") or m.get("username") or "bot")
        prefix = "  ↳ " if m.get("_reply") else ""
        text = " ".join((m.get("text") or "").split())
        if speaker == last_speaker and not prefix:
            lines.append((m["ts"], f"{prefix}{text}"))
        else:
            lines.append((m["ts"], f"{prefix}{speaker}: {text}"))
        last_speaker = "" if prefix else speaker
    return lines


def chunks_of(lines: list[tuple[str, str]], size: int | None = None) -> list[tuple[str, str]]:
    """(first ts, text) chunks of at most `size` characters, cut between lines."""
    size = size or CHUNK_CHARS
    chunks: list[tuple[str, str]] = []
    current: list[str] = []
    first, used = "", 0
    for ts, line in lines:
        line = line[:size]
        if current and used + len(line) + 1 > size:
            chunks.append((first, "\n".join(current)))
            current, used = [], 0
        if not current:
            first = ts
        current.append(line)
        used += len(line) + 1
    if current:
        chunks.append((first, "\n".join(current)))
    return chunks


async def read_period(
    ctx: ToolContext, channel_id: str, name: str, oldest: float, latest: float | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Every message of the period with thread replies under their parents; (messages, capped)."""
    top, capped = await history(ctx, channel_id, name, oldest, latest, limit=MAX_MESSAGES, page_size=999)
    threads = [m for m in top if m.get("reply_count")]
    gate = asyncio.Semaphore(8)

    async def thread(parent: dict[str, Any]) -> list[dict[str, Any]]:
        async with gate:
            return [{**r, "_reply": True} for r in await replies(ctx, channel_id, name, parent["ts"])]

    answers = await asyncio.gather(*(thread(t) for t in threads))
    by_parent = {t["ts"]: rs for t, rs in zip(threads, answers, strict=True)}
    out: list[dict[str, Any]] = []
    for m in top:
        out.append(m)
        out += by_parent.get(m["ts"], [])
    return out, capped


async def thread_links(ctx: ToolContext, channel_id: str, messages: list[dict[str, Any]]) -> list[str]:
    """Links to the busiest threads, so readers can jump to what mattered."""
    busiest = sorted(
        (m for m in messages if m.get("reply_count") and not m.get("_reply")),
        key=lambda m: m["reply_count"],
        reverse=True,
    )[:TOP_THREADS]
    links = []
    for m in busiest:
        if ctx.slack is None:
            raise InvariantError("a channel summary without a Slack client")
        link = (await ctx.slack.chat_getPermalink(channel=channel_id, message_ts=m["ts"]))["permalink"]
        first = " ".join((m.get("text") or "").split())[:60]
        links.append(f"- <{link}|{first or 'thread'}> ({m['reply_count']} replies)")
    return links


async def summarize_channel(
    ctx: ToolContext, channel_id: str, name: str, oldest: float, latest: float | None = None
) -> WorkflowReply:
    """The /summarize pipeline; the model appears only in the summarize steps."""
    messages, capped = await read_period(ctx, channel_id, name, oldest, latest)
    label = f"#{name}"
    if not messages:
        return WorkflowReply(f"No activity in {label} in that period.", notes=["empty"])
    names = await user_names(ctx, {m["user"] for m in messages if m.get("user")}, {})
    chunks = chunks_of(transcript(messages, names))
    notes = []
    if capped:
        notes.append(f"only the newest {MAX_MESSAGES} messages were read")
    budget = ctx.settings.summarize_token_budget
    if ctx.usage.limit is not None:  # a daily cap's reservation: half reads, half summarizes
        budget = min(budget, ctx.usage.limit // 2)
    limit = MAX_CHUNKS or max(1, budget * 4 // CHUNK_CHARS)
    if len(chunks) > limit:
        chunks = chunks[-limit:]
        since = _clock(chunks[0][0])
        notes.append(
            f"the period was too long to cover fully within the token budget: this covers from {since} UTC"
        )
    people = len(names)
    head = f"*{len(messages)} messages from {people} {'person' if people == 1 else 'people'} in {label}*"
    if ctx.llm is None:
        notes.append("no language model configured: counts only")
        body = head
    elif len(chunks) == 1:
        body = head + "\n\n" + (await summarize(ctx, chunks[0][1], CHUNK_STYLE.format(channel=label))).text
    else:
        gate = asyncio.Semaphore(4)

        async def part(chunk: str) -> str:
            async with gate:
                return (await summarize(ctx, chunk, CHUNK_STYLE.format(channel=label))).text

        partials = list(await asyncio.gather(*(part(text) for _, text in chunks)))
        while len(partials) > 1:  # combine in groups, so no single call outgrows the context
            groups = [partials[i : i + GROUP] for i in range(0, len(partials), GROUP)]

            async def combine(group: list[str]) -> str:
                joined = "\n\n".join(f"Part {i + 1}:\n{p}" for i, p in enumerate(group))
                async with gate:
                    return (await summarize(ctx, joined, COMBINE_STYLE.format(channel=label))).text

            partials = list(await asyncio.gather(*(combine(g) for g in groups)))
        body = head + "\n\n" + partials[0]
    links = await thread_links(ctx, channel_id, messages)
    if links:
        body += "\n\n*Threads worth reading*\n" + "\n".join(links)
    if notes:
        body += "\n\n_Note: " + "; ".join(notes) + "._"
    return WorkflowReply(body, notes=notes)
