"""What a run's traced steps say: which tools ran in what order, and how the model misused them.

Shared by evals (the runs it just made) and insights (the runs stored over weeks), so both count
the same way. Steps are the `step` rows of a run, oldest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# How the gate and the registry word their refusals and the model's mistakes (tools/guards/gate.py,
# tools/toolkit/registry.py); a step's error is classified by its opening words.
INVALID = ("invalid arguments for ", "The arguments for ")
UNKNOWN = ("There is no tool called ",)
REFUSED = ("Not sent", "Not shown here", "Not run: this run has used its token budget")
APPROVAL = "needs the requesting user's approval"
REPLAY_MISS = "Not recorded:"  # orchestrators/evals/tape.py
MISUSE_KINDS = ("invalid_arguments", "unknown_tool", "repeated_call", "refused")


@dataclass(frozen=True)
class StepView:
    """The fields of one traced step that evals and insights read."""

    kind: str  # "tool" or "model"
    name: str
    arguments: str | None = None
    error: str | None = None


def tool_sequence(steps: Iterable[StepView]) -> tuple[str, ...]:
    """The tools that ran, as rounds between model calls: "a+b" for a round's calls (sorted: they
    ran concurrently, so their order is not the model's choice). A composite tool's inner calls
    (get_weather's geocode, get_forecast) finish before it and belong to its round."""
    rounds: list[list[str]] = [[]]
    for step in steps:
        if step.kind == "tool":
            rounds[-1].append(step.name)
        elif rounds[-1]:
            rounds.append([])
    return tuple("+".join(sorted(r)) for r in rounds if r)


def show_sequence(sequence: Sequence[str]) -> str:
    return " → ".join(sequence) or "(no tools)"


def tools_ran(steps: Iterable[StepView]) -> list[str]:
    return [s.name for s in steps if s.kind == "tool"]


def misuse(steps: Sequence[StepView]) -> Counter[str]:
    """Invalid arguments, unknown tools, repeated identical calls and calls the gate refused."""
    found: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for step in steps:
        if step.kind != "tool":
            continue
        error = step.error or ""
        if error.startswith(INVALID):
            found["invalid_arguments"] += 1
        elif error.startswith(UNKNOWN):
            found["unknown_tool"] += 1
        elif error.startswith(REFUSED) or APPROVAL in error:
            found["refused"] += 1
        call = (step.name, step.arguments or "")
        if call in seen:
            found["repeated_call"] += 1
        seen.add(call)
    return found


def replay_misses(steps: Iterable[StepView]) -> int:
    return sum(1 for s in steps if s.kind == "tool" and (s.error or "").startswith(REPLAY_MISS))
