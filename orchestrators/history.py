"""Trimming a thread's history to a token budget without breaking tool-call groups."""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def estimate_tokens(message: Message) -> int:
    """A cheap, tokenizer-free estimate (about four characters a token) used for budgeting."""
    size = len(message.get("content") or "")
    if message.get("tool_calls"):
        size += len(json.dumps(message["tool_calls"]))
    return size // 4 + 4


def _units(messages: list[Message]) -> list[list[Message]]:
    """Group an assistant tool-call message with its tool results; drop broken groups.

    An orphaned tool result, or a tool call without its result, makes the API reject every later
    request in the thread, so such fragments are dropped rather than sent.
    """
    units: list[list[Message]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        if m.get("role") == "assistant" and m.get("tool_calls"):
            wanted = [c["id"] for c in m["tool_calls"]]
            group = [m]
            j = i + 1
            while j < len(messages) and messages[j].get("role") == "tool":
                group.append(messages[j])
                j += 1
            answered = [g.get("tool_call_id") for g in group[1:]]
            if sorted(answered, key=str) == sorted(wanted, key=str):
                units.append(group)
            i = j
        elif m.get("role") == "tool":
            i += 1  # orphan
        else:
            units.append([m])
            i += 1
    return units


def trim_history(messages: list[Message], budget: int) -> list[Message]:
    """Keep the newest whole units that fit in `budget` tokens; the newest unit always stays."""
    kept: list[list[Message]] = []
    used = 0
    for unit in reversed(_units(messages)):
        cost = sum(estimate_tokens(m) for m in unit)
        if kept and used + cost > budget:
            break
        if not kept and cost > budget and len(unit) == 1:
            unit = [_shorten(unit[0], budget)]
            cost = estimate_tokens(unit[0])
        kept.append(unit)
        used += cost
    # A history may not open with an assistant tool-call group cut from its question; fine for
    # the API, but it must not open with a tool result, which _units already guarantees.
    return [m for unit in reversed(kept) for m in unit]


def _shorten(message: Message, budget: int) -> Message:
    """Keep the head and tail of one over-long message, saying what was left out."""
    text = message.get("content") or ""
    keep = max(budget * 4 - 200, 400)
    if len(text) <= keep:
        return message
    head, tail = text[: keep // 2], text[-keep // 2 :]
    cut = len(text) - len(head) - len(tail)
    return {**message, "content": f"{head}\n[... {cut} characters left out ...]\n{tail}"}
