"""Tool results on tape: `--record` keeps every result a run's tools produced, keyed by tool name
and canonical arguments; `--replay` serves calls from it, so a suite reruns offline and two models
meet identical tool outputs. An unrecorded call is a miss (an error result), never a live call.

It sits at the gate's execute step (ToolContext.layer), after egress, approval and budget: the
rules run as they would live, only the tool's own work is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError

from tools.guards.gate import to_jsonable
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import AnyTool, ToolError

VERSION = 1


def canonical(args: dict[str, Any]) -> str:
    return json.dumps(to_jsonable(args), sort_keys=True, ensure_ascii=False, default=str)


def key_of(tool: str, args: dict[str, Any]) -> str:
    return f"{tool} {canonical(args)}"


def revive(tool: AnyTool, data: Any) -> Any:
    """A recorded JSON value as the type the tool returns: workflows read its attributes."""
    fn = getattr(tool, "_fn", None)
    try:
        returns = get_type_hints(fn).get("return") if fn is not None else None
    except (NameError, TypeError):
        returns = None
    if returns is None:
        return data
    try:
        return TypeAdapter(returns).validate_python(data)
    except ValidationError:
        return data


class Tape:
    """Records (mode "record") or replays (mode "replay") tool results."""

    def __init__(self, mode: str, entries: dict[str, dict[str, Any]] | None = None) -> None:
        if mode not in ("record", "replay"):
            raise ValueError(f"unknown tape mode {mode!r}")
        self.mode = mode
        self.entries: dict[str, dict[str, Any]] = dict(entries or {})
        self.hits = 0
        self.misses: list[str] = []

    @classmethod
    def load(cls, path: Path) -> Tape:
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            raise ValueError(f"{path}: not a Switchboard tape (version {VERSION})")
        return cls("replay", {e["key"]: e for e in data["entries"]})

    def save(self, path: Path) -> None:
        entries = sorted(self.entries.values(), key=lambda e: e["key"])
        path.write_text(json.dumps({"version": VERSION, "entries": entries}, indent=1, ensure_ascii=False))

    async def execute(self, tool: AnyTool, ctx: ToolContext, args: dict[str, Any]) -> Any:
        key = key_of(tool.name, args)
        if self.mode == "replay":
            return self._replay(tool, key)
        entry: dict[str, Any] = {"key": key, "tool": tool.name, "arguments": json.loads(canonical(args))}
        try:
            value = await tool.execute(ctx, args)
        except ToolError as exc:
            self.entries.setdefault(key, {**entry, "error": str(exc)})
            raise
        except Exception as exc:  # worded as the gate words it, so replay says the same
            error = f"{tool.name} failed: {exc or type(exc).__name__}"
            self.entries.setdefault(key, {**entry, "error": error})
            raise
        self.entries.setdefault(key, {**entry, "value": to_jsonable(value)})
        return value

    def _replay(self, tool: AnyTool, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            self.misses.append(key)
            raise ToolError(
                f"Not recorded: {key[:300]} is not on the replay tape, and replay never calls a tool "
                "live. Answer with what you have."
            )
        self.hits += 1
        if "error" in entry:
            raise ToolError(entry["error"])
        return revive(tool, entry["value"])
