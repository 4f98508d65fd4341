"""Everything the model is shown keeps its sources; replayed history keeps only what the current
user may read, and what it keeps from non-public places makes the run carry non-public content.

A tool message's content starts with the tag we write, `<tool_output tool="…" sources="…">`, so
its sources are stored with it in the conversation's history. The opening tag is ours: hostile
content inside cannot change it (it sits below the first line, and its closing tags are escaped).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tools.guards.audience import may_read
from tools.toolkit.context import ToolContext

OPENING = re.compile(r'^<tool_output tool="(?P<tool>[^"]*)"(?: sources="(?P<sources>[^"]*)")?>')
WITHHELD = (
    '<tool_output tool="{tool}">\n{{"withheld": "This output came from {label}, which the person '
    'asking now cannot read, so it is not shown."}}\n</tool_output>'
)


def wrap_output(name: str, content: str, sources: Sequence[str] = ()) -> str:
    """Delimit tool output so the model can tell data from instructions, even hostile data."""
    safe = content.replace("</tool_output", "<\\/tool_output")
    name = re.sub(r'[\s"<>]', "", name)  # a model-chosen (unknown) name must not reshape the tag
    clean = [re.sub(r'[\s"<>]', "", s) for s in sources]
    attrs = f' sources="{" ".join(c for c in clean if c)}"' if any(clean) else ""
    return f'<tool_output tool="{name}"{attrs}>\n{safe}\n</tool_output>'


def sources_of(content: str | None) -> tuple[str, list[str]]:
    """(tool name, sources) from a tool message written by `wrap_output`."""
    match = OPENING.match(content or "")
    if not match:
        return "", []
    return match["tool"], (match["sources"] or "").split()


SLACK_SOURCES = ("slack:", "slack-files:")  # content of a Slack conversation: the audience rule applies
WITHHELD_ANSWER = "(This reply drew on {label}, which the person asking now cannot read, so it is not shown.)"
WITHHELD_ARGUMENTS = '{"withheld": "drew on a conversation the person asking now cannot read"}'


def message_sources(message: dict[str, Any]) -> list[str]:
    """Where a stored message's content came from: a tool result's tag, or the `sources` a reply
    was stored with (what its run had read that not everyone may read)."""
    if message.get("role") == "tool":
        return sources_of(message.get("content"))[1]
    return list(message.get("sources") or [])


async def readable_history(history: list[dict[str, Any]], ctx: ToolContext) -> list[dict[str, Any]]:
    """History for `ctx.user_id`: content from channels they cannot read is replaced by a note.

    What stays and came from a non-public channel counts as read by this run (the egress guard),
    for as long as it stays in the history the model is shown. The `sources` keys are ours: they
    are removed here, before anything reaches the model.
    """
    verdicts: dict[str, tuple[bool, bool]] = {}  # channel -> (may read, is public)
    out: list[dict[str, Any]] = []
    for original in history:
        message = {k: v for k, v in original.items() if k != "sources"}
        hidden = []
        for source in message_sources(original):
            if not source.startswith(SLACK_SOURCES):
                continue
            channel = source.split(":", 1)[1]
            if channel not in verdicts:
                verdicts[channel] = await _verdict(ctx, channel)
            readable, public = verdicts[channel]
            if not readable:
                hidden.append(channel)
            elif not public and source not in ctx.flow.private_sources:
                ctx.flow.private_sources.append(source)
        if hidden:
            message = _withheld(message, ", ".join(f"<#{c}>" for c in dict.fromkeys(hidden)))
        out.append(message)
    return out


def _withheld(message: dict[str, Any], label: str) -> dict[str, Any]:
    if message.get("role") == "tool":
        tool = sources_of(message.get("content"))[0]
        return {**message, "content": WITHHELD.format(tool=tool, label=label)}
    hidden = {**message, "content": WITHHELD_ANSWER.format(label=label)}
    if message.get("tool_calls"):  # the calls' arguments may quote what was read
        hidden["tool_calls"] = [
            {**c, "function": {**c.get("function", {}), "arguments": WITHHELD_ARGUMENTS}}
            for c in message["tool_calls"]
        ]
    return hidden


async def _verdict(ctx: ToolContext, channel_id: str) -> tuple[bool, bool]:
    if ctx.slack is None or not ctx.user_id:
        return False, False
    verdict = await may_read(
        ctx.slack, ctx.memberships, team=ctx.team_id, source=channel_id, user=ctx.user_id
    )
    public = False
    if verdict.allowed:
        public = (await ctx.memberships.channel(ctx.slack, channel_id)).is_public
    return verdict.allowed, public
