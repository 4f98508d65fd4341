"""Reading a Slack channel for a user: only channels that user is a member of, and only for
showing where everyone who will see the result may read that channel (tools/guards/audience.py)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from slack_sdk.errors import SlackApiError

from tools.guards.audience import ChannelFacts, may_show
from tools.parsing.period import PeriodError, is_period, parse_period
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError, tool

MAX_MESSAGES = 500
REF = re.compile(r"^<#(?P<id>[CGD][A-Z0-9]+)(\|(?P<name>[^>]*))?>$")


class ChannelMessage(BaseModel):
    ts: str
    user: str
    text: str
    reply_count: int = 0
    thread_ts: str | None = None


class ChannelMessages(BaseModel):
    channel: str
    channel_id: str
    since: str
    messages: list[ChannelMessage]
    capped: bool = False


def period_seconds(since: str) -> int:
    if not is_period(since):
        raise ToolError(f"since must look like 90m, 24h or 7d, not {since!r}")
    try:
        return int(parse_period(since).total_seconds())
    except PeriodError:
        raise ToolError("since must be between 1 minute and 90 days") from None


def _slack(ctx: ToolContext) -> Any:
    if ctx.slack is None:
        raise ToolError("Slack is not available here (console mode), so channels cannot be read")
    return ctx.slack


async def resolve_channel(ctx: ToolContext, channel: str) -> tuple[str, str]:
    """(id, name) from "C123", "<#C123|general>", "#general" or "general"."""
    slack = _slack(ctx)
    channel = channel.strip()
    match = REF.match(channel)
    if match:
        channel = match["id"]
    if re.fullmatch(r"[CGD][A-Z0-9]+", channel):  # channel names are lower-case; IDs are not
        try:
            info = (await slack.conversations_info(channel=channel))["channel"]
        except SlackApiError as exc:
            raise ToolError(_explain(exc, channel)) from None
        return channel, info.get("name") or channel
    name = channel.lstrip("#").lower()
    cursor = None
    while True:
        page = await slack.conversations_list(
            types="public_channel,private_channel", limit=200, cursor=cursor, exclude_archived=True
        )
        for c in page["channels"]:
            if c.get("name", "").lower() == name:
                return c["id"], c["name"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            raise ToolError(f"No channel called #{name} that I can see; invite me to it first")


async def ensure_member(ctx: ToolContext, channel_id: str, name: str) -> None:
    """A user may only read channels they belong to: never a private channel through the bot."""
    if not ctx.user_id:
        raise ToolError("I don't know who is asking, so I can't check channel membership")
    try:
        facts = await ctx.memberships.channel(_slack(ctx), channel_id)  # paginated, cached briefly
    except SlackApiError as exc:
        raise ToolError(_explain(exc, name)) from None
    if ctx.user_id not in facts.members:
        raise ToolError(f"You are not a member of #{name}, so I can't read it for you")


async def ensure_may_show(ctx: ToolContext, channel_id: str) -> ChannelFacts:
    """The channel's content may appear where this run's results appear, or ToolError says why."""
    slack = _slack(ctx)
    try:
        verdict = await may_show(
            slack,
            ctx.memberships,
            team=ctx.team_id,
            source=channel_id,
            place=ctx.channel_id,
            ephemeral_to=ctx.ephemeral_to,
            bot_user=ctx.bot_user_id,
        )
        facts = await ctx.memberships.channel(slack, channel_id)
    except SlackApiError as exc:
        raise ToolError(_explain(exc, channel_id)) from None
    if not verdict.allowed:
        raise ToolError(f"Not shown here: {verdict.reason}.")
    return facts


def _explain(exc: SlackApiError, name: str) -> str:
    error = exc.response.get("error", "") if exc.response else ""
    if error in ("not_in_channel", "channel_not_found"):
        return f"I can't read #{name}: invite me to it first (/invite @Switchboard)"
    return f"Slack refused to read #{name}: {error or exc}"


async def thread_pages(
    ctx: ToolContext, channel_id: str, name: str, thread_ts: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """A thread's messages page by page, oldest first (Slack may repeat the parent on each page);
    Slack's refusals become ToolErrors, so callers above tools never see Slack's exceptions."""
    slack = _slack(ctx)
    cursor = None
    while True:
        try:
            page = await slack.conversations_replies(
                channel=channel_id, ts=thread_ts, limit=200, cursor=cursor
            )
        except SlackApiError as exc:
            raise ToolError(_explain(exc, name)) from None
        yield page["messages"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return


async def replies(ctx: ToolContext, channel_id: str, name: str, thread_ts: str) -> list[dict[str, Any]]:
    """A thread's replies (without its parent), oldest first, paginated."""
    out: list[dict[str, Any]] = []
    async for messages in thread_pages(ctx, channel_id, name, thread_ts):
        out += [m for m in messages if m["ts"] != thread_ts]
    return out


async def user_names(ctx: ToolContext, ids: set[str], cache: dict[str, str]) -> dict[str, str]:
    slack = _slack(ctx)
    for uid in ids - cache.keys():
        try:
            user = (await slack.users_info(user=uid))["user"]
            profile = user.get("profile") or {}
            cache[uid] = profile.get("display_name") or user.get("real_name") or user.get("name") or uid
        except SlackApiError:
            cache[uid] = uid
    return cache


async def history(
    ctx: ToolContext,
    channel_id: str,
    name: str,
    oldest: float,
    latest: float | None = None,
    limit: int = MAX_MESSAGES,
    page_size: int = 200,
) -> tuple[list[dict[str, Any]], bool]:
    """Top-level messages of a period, oldest first, paginated; (messages, capped)."""
    slack = _slack(ctx)
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        kwargs: dict[str, Any] = {"channel": channel_id, "oldest": f"{oldest:.6f}", "limit": page_size}
        if latest is not None:
            kwargs["latest"] = f"{latest:.6f}"
        if cursor:
            kwargs["cursor"] = cursor
        try:
            page = await slack.conversations_history(**kwargs)
        except SlackApiError as exc:
            raise ToolError(_explain(exc, name)) from None
        out += [m for m in page["messages"] if not m.get("subtype") or m.get("subtype") == "thread_broadcast"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if len(out) > limit or (cursor and len(out) == limit):  # keep the newest `limit`
            return sorted(out, key=lambda m: float(m["ts"]))[-limit:], True
        if not cursor:
            return sorted(out, key=lambda m: float(m["ts"])), False


@tool(timeout=30, max_output_chars=30_000, status="Reading the channel…", egress=())  # Slack itself
async def read_channel(ctx: ToolContext, channel: str, since: str = "24h") -> ChannelMessages:
    """Recent messages of a Slack channel the asking user belongs to, oldest first.

    Args:
        channel: "#general", "general", a channel ID like "C0123" or a <#C0123|general> mention.
        since: how far back to read: "90m", "24h", "7d" (at most 90 days).
    """
    seconds = period_seconds(since)
    channel_id, name = await resolve_channel(ctx, channel)
    await ensure_member(ctx, channel_id, name)
    facts = await ensure_may_show(ctx, channel_id)
    ctx.note_source(f"slack:{channel_id}", public=facts.is_public)
    raw, capped = await history(ctx, channel_id, name, time.time() - seconds)
    names = await user_names(ctx, {m["user"] for m in raw if m.get("user")}, {})
    return ChannelMessages(
        channel=f"#{name}",
        channel_id=channel_id,
        since=since,
        capped=capped,
        messages=[
            ChannelMessage(
                ts=m["ts"],
                user=names.get(m.get("user", ""), m.get("user") or m.get("username") or "bot"),
                text=m.get("text", ""),
                reply_count=m.get("reply_count", 0),
                thread_ts=m.get("thread_ts"),
            )
            for m in raw
        ],
    )
