"""What every code workflow returns, and the tool wrapper that offers it to the model too."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WorkflowReply:
    """A finished workflow: Markdown for the user plus what it read (for footers and tests)."""

    text: str
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "the period was too long to cover fully"
    ephemeral: bool = False  # show it only to the person who asked (the place has other readers)
