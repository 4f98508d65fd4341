"""Splitting long Markdown under Slack's per-block limit, never inside a code fence."""

from __future__ import annotations

import re

FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})(.*)$")


def _blocks(text: str) -> list[tuple[str, str | None]]:
    """(chunk, fence opener or None): paragraphs and whole fenced code blocks, in order."""
    out: list[tuple[str, str | None]] = []
    lines = text.split("\n")
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(("\n".join(para), None))
            para.clear()

    while i < len(lines):
        line = lines[i]
        match = FENCE.match(line)
        if match:
            flush()
            marker = match.group(2)
            block = [line]
            i += 1
            while i < len(lines):
                block.append(lines[i])
                closing = FENCE.match(lines[i])
                i += 1
                if (
                    closing
                    and closing.group(2)[0] == marker[0]
                    and len(closing.group(2)) >= len(marker)
                    and not closing.group(3).strip()
                ):
                    break
            out.append(("\n".join(block), line.strip()))
            continue
        if line.strip() == "":
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return out


def _hard_split(line: str, limit: int) -> list[str]:
    parts = []
    while len(line) > limit:
        cut = line.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        parts.append(line[:cut])
        line = line[cut:].lstrip(" ")
    if line:
        parts.append(line)
    return parts


def _pack(pieces: list[str], limit: int, joiner: str) -> list[str]:
    """Greedily join consecutive pieces (each already <= limit) into parts <= limit."""
    parts: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}{joiner}{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


def _split_plain(chunk: str, limit: int) -> list[str]:
    """Lines first; a single over-long line is cut at a space where possible."""
    lines = [
        p for line in chunk.split("\n") for p in (_hard_split(line, limit) if len(line) > limit else [line])
    ]
    return _pack(lines, limit, "\n")


def _split_code(chunk: str, opener: str, limit: int) -> list[str]:
    """An over-long code block: close the fence at each cut and reopen it, same language."""
    lines = chunk.split("\n")
    marker = FENCE.match(opener).group(2)  # type: ignore[union-attr]
    closed = len(lines) > 1 and FENCE.match(lines[-1]) is not None
    body = lines[1:-1] if closed else lines[1:]
    room = limit - len(opener) - len(marker) - 2
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in [p for raw in body for p in (_hard_split(raw, room) if len(raw) > room else [raw])]:
        if current and size + len(line) + 1 > room:
            parts.append("\n".join([opener, *current, marker]))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    parts.append("\n".join([opener, *current, marker]))
    return parts


def split_markdown(text: str, limit: int = 12_000) -> list[str]:
    """Parts of at most `limit` characters, split at paragraphs, then lines; fences stay balanced."""
    if not text.strip():
        return []
    pieces: list[str] = []
    for chunk, opener in _blocks(text):
        if len(chunk) <= limit:
            pieces.append(chunk)
        elif opener is not None:
            pieces += _split_code(chunk, opener, limit)
        else:
            pieces += _split_plain(chunk, limit)
    return [p for p in _pack(pieces, limit, "\n\n") if p.strip()]
