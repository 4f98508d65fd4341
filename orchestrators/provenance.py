"""Tool output carries its sources; replayed history keeps only what the current user may read.

A tool message's content starts with the tag we write, `<tool_output tool="…" sources="…">`, so
its sources are stored with it in the conversation's history. The opening tag is ours: hostile
content inside cannot change it (it sits below the first line, and its closing tags are escaped).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tools.audience import may_read
from tools.context import ToolContext

OPENING = re.compile(r'^<tool_output tool="(?P<tool>[^"]*)"(?: sources="(?P<sources>[^"]*)")?>')
WITHHELD = (
    '<tool_output tool="{tool}">\n{{"withheld": "This output came from {label}, which the person '
    'asking now cannot read, so it is not shown."}}\n</tool_output>'
)


def wrap_output(name: str, content: str, sources: Sequence[str] = ()) -> str:
    """Delimit tool output so the model can tell data from instructions, even hostile data."""
    safe = content.replace("</tool_output", "<\\/tool_output")
    clean = [re.sub(r'[\s"<>]', "", s) for s in sources]
    attrs = f' sources="{" ".join(c for c in clean if c)}"' if any(clean) else ""
    return f'<tool_output tool="{name}"{attrs}>\n{safe}\n</tool_output>'


def sources_of(content: str | None) -> tuple[str, list[str]]:
    """(tool name, sources) from a tool message written by `wrap_output`."""
    match = OPENING.match(content or "")
    if not match:
        return "", []
    return match["tool"], (match["sources"] or "").split()


async def readable_history(history: list[dict[str, Any]], ctx: ToolContext) -> list[dict[str, Any]]:
    """History for `ctx.user_id`: tool output from channels they cannot read is replaced by a note.

    What stays and came from a non-public channel counts as read by this run (the egress guard).
    """
    verdicts: dict[str, tuple[bool, bool]] = {}  # source -> (may read, is public)
    out: list[dict[str, Any]] = []
    for message in history:
        if message.get("role") != "tool":
            out.append(message)
            continue
        tool, sources = sources_of(message.get("content"))
        hidden = []
        for source in sources:
            if not source.startswith("slack:"):
                continue
            if source not in verdicts:
                verdicts[source] = await _verdict(ctx, source.removeprefix("slack:"))
            readable, public = verdicts[source]
            if not readable:
                hidden.append(source)
            elif not public and source not in ctx.flow.private_sources:
                ctx.flow.private_sources.append(source)
        if hidden:
            label = ", ".join(f"<#{s.removeprefix('slack:')}>" for s in hidden)
            message = {**message, "content": WITHHELD.format(tool=tool, label=label)}
        out.append(message)
    return out


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
