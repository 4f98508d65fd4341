"""Fitting a thread's history into the model's window without breaking tool-call groups."""

from __future__ import annotations

from typing import Any

from tools.llm.completion import CHARS_PER_TOKEN, content_text, estimate_tokens

Message = dict[str, Any]

__all__ = ["estimate_tokens", "sanitize", "shrink", "trim_history"]

SHORTEN_MARGIN_CHARS = 200  # room for the "[... left out ...]" note itself
MIN_KEPT_CHARS = 400  # a shortened message keeps at least this much of its head and tail
SHRUNK_TOOL_RESULT_TOKENS = 1_000  # a prompt over the window cuts each tool result to at most this
MIN_TOOL_RESULT_TOKENS = 100  # ... and to at least this, however many there are
TOOL_RESULTS_SHARE = 2  # tool results of this turn may take up to half of the budget together


def sanitize(messages: list[Message]) -> list[Message]:
    """Messages every server accepts: string content (never null), no empty assistant replies.

    Ollama answers 400 and llama-cpp-python 500 to `content: null`; one stored null reply would
    break the thread for good, so old rows are repaired here on the way out too. List content
    (text and image parts) is kept as it is.
    """
    out: list[Message] = []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "assistant" and not m.get("tool_calls") and not content_text(content).strip():
            continue
        out.append({**m, "content": "" if content is None else content})
    return out


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
            wanted = [str(c["id"]) for c in m["tool_calls"]]
            group = [m]
            j = i + 1
            while j < len(messages) and messages[j].get("role") == "tool":
                group.append(messages[j])
                j += 1
            answered = [str(g.get("tool_call_id")) for g in group[1:]]
            if sorted(answered) == sorted(wanted):
                units.append(group)
            i = j
        elif m.get("role") == "tool":
            i += 1  # orphan
        else:
            units.append([m])
            i += 1
    return units


def trim_history(messages: list[Message], budget: int) -> list[Message]:
    """Keep the newest whole units that fit in `budget` tokens; the newest unit always stays.

    A single message too long for the budget is shortened (head and tail kept, with a note).
    """
    kept: list[list[Message]] = []
    used = 0
    for unit in reversed(_units(sanitize(messages))):
        cost = sum(estimate_tokens(m) for m in unit)
        if kept and used + cost > budget:
            break
        if not kept and cost > budget and len(unit) == 1:
            unit = [_shorten(unit[0], budget)]
            cost = estimate_tokens(unit[0])
        kept.append(unit)
        used += cost
    return [m for unit in reversed(kept) for m in unit]


def shrink(messages: list[Message], budget: int, turn_start: int) -> list[Message]:
    """A prompt within `budget`: this turn (its question and tool groups) is kept, its tool results
    cut to share the budget, then older history fills what is left, newest first.

    `turn_start` is the index of this turn's question in `messages`.
    """
    older, turn = messages[:turn_start], messages[turn_start:]
    results = sum(1 for m in turn if m.get("role") == "tool")
    share = budget // (TOOL_RESULTS_SHARE * max(results, 1))
    per_result = min(SHRUNK_TOOL_RESULT_TOKENS, max(MIN_TOOL_RESULT_TOKENS, share))
    turn = [_shorten(m, per_result) if m.get("role") == "tool" else m for m in turn]
    used = sum(estimate_tokens(m) for m in turn)
    if turn and used > budget:  # the question itself is too long: keep its beginning and end
        rest = used - estimate_tokens(turn[0])
        turn[0] = _shorten(turn[0], max(budget - rest, MIN_KEPT_CHARS // CHARS_PER_TOKEN))
        used = sum(estimate_tokens(m) for m in turn)
    return _newest_units(older, budget - used) + turn


def _newest_units(messages: list[Message], budget: int) -> list[Message]:
    """The newest whole units within `budget` (possibly none)."""
    kept: list[list[Message]] = []
    used = 0
    for unit in reversed(_units(sanitize(messages))):
        cost = sum(estimate_tokens(m) for m in unit)
        if used + cost > budget:
            break
        kept.append(unit)
        used += cost
    return [m for unit in reversed(kept) for m in unit]


def was_shortened(original: list[Message], kept: list[Message]) -> bool:
    """True when the newest message itself had to be cut to fit."""
    return bool(original and kept) and content_text(kept[-1].get("content")) != content_text(
        original[-1].get("content")
    )


def _shorten(message: Message, budget: int) -> Message:
    """Keep the head and tail of one over-long message, saying what was left out."""
    content = message.get("content")
    if not isinstance(content, str):
        return message  # content parts (images) are not cut apart
    keep = max(budget * CHARS_PER_TOKEN - SHORTEN_MARGIN_CHARS, MIN_KEPT_CHARS)
    if len(content) <= keep:
        return message
    head, tail = content[: keep // 2], content[-keep // 2 :]
    cut = len(content) - len(head) - len(tail)
    return {**message, "content": f"{head}\n[... {cut} characters left out ...]\n{tail}"}
