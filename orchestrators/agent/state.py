"""What one agent run carries from step to step, and the limits that end it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.llm.model_call import TextSink
    from tools.toolkit.context import ToolContext
    from tools.toolkit.registry import ToolRegistry


@dataclass(frozen=True)
class Limits:
    max_steps: int = 8
    deadline: float = 90.0
    token_budget: int = 100_000
    history_tokens: int = 12_000
    llm_timeout: float = 60.0
    repeat_limit: int = 2  # the same failing call this many times is refused
    context_tokens: int = 128_000  # the model's window: system prompt, tools, history and answer
    max_tool_calls_per_turn: int = 10  # more calls in one model turn get an error result
    max_tool_calls: int = 40  # per run
    tool_concurrency: int = 4  # tool calls of one turn running at the same time

    def check(self, state: RunState) -> str | None:
        """Why the run must stop now, or None: the only place limits are decided."""
        if state.steps >= self.max_steps:
            return f"{self.max_steps} tool steps"
        if state.elapsed >= self.deadline:
            return f"the {self.deadline:g}-second time limit"
        if state.ctx.usage.total_tokens >= self.token_budget:
            return f"the budget of {self.token_budget} tokens"
        if state.tool_calls >= self.max_tool_calls:
            return f"{self.max_tool_calls} tool calls"
        if state.repeats > self.repeat_limit:
            return "the same failing tool call kept repeating"
        return None


@dataclass
class AgentResult:
    text: str
    messages: list[dict[str, Any]]  # what this turn added: tool-call groups and the answer
    status: str = "ok"  # ok | limited | unconfigured
    stop_reason: str | None = None
    steps: int = 0
    tools_used: list[str] = field(default_factory=list)
    finish_reason: str | None = None  # of the last model call: stop, length, content_filter, ...


@dataclass
class RunState:
    """Everything one run carries from step to step."""

    ctx: ToolContext
    model: str
    registry: ToolRegistry
    on_text: TextSink | None
    messages: list[dict[str, Any]]  # the next prompt: system, fitted history, this turn so far
    output_tokens: int  # the cap on each answer, within the window
    window: int  # the model's context window in tokens (smaller once a server names its own)
    turn_start: int  # index in `messages` of this turn's question: kept whatever is cut
    added: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tools_used: list[str] = field(default_factory=list)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    tool_calls: int = 0
    notes: list[str] = field(default_factory=list)  # said at the end of the answer
    tools_refused: bool = False  # the server cannot take tools: the run goes on without them

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def repeats(self) -> int:
        return max(self.failures.values(), default=0)
