"""What stored runs say: the model's habits (its most frequent tool sequences), what they cost
and how often they fail, and which of them a workflow already does, or could.

Pure: `bot/ops/insights_report.py` reads the runs and their steps from the database.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from orchestrators.evals.traces import StepView, misuse, show_sequence, tool_sequence

LLM_TRIGGERS = frozenset({"mention", "dm", "thread", "assistant", "/ask"})
# The tools each workflow stands for: `core` are what it is about, `extra` what it also uses. An
# LLM habit is covered when all its tools are the workflow's and at least one is core.
WORKFLOW_TOOLS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "/weather": (
        frozenset({"get_weather", "weather_report", "geocode", "get_forecast"}),
        frozenset({"summarize"}),
    ),
    "/research": (frozenset({"search_web", "research"}), frozenset({"call_api", "summarize"})),
    "/summarize": (frozenset({"read_channel"}), frozenset({"summarize"})),
}
SINCE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
REQUESTS_SHOWN = 3


def parse_since(text: str) -> timedelta:
    """`30d`, `12h`, `2w`."""
    match = SINCE.match(text.lower())
    if not match:
        raise ValueError(f"--since takes a number and h, d or w (e.g. 30d), not {text!r}")
    n, unit = int(match[1]), match[2]
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


@dataclass
class StoredRun:
    id: int
    trigger: str
    status: str
    cost_usd: float | None
    steps: list[StepView]
    request: str | None = None  # the asker's message, when the conversation kept it


def tools_of(sequence: tuple[str, ...]) -> set[str]:
    return {name for round_ in sequence for name in round_.split("+")}


def covering_workflow(sequence: tuple[str, ...]) -> str | None:
    used = tools_of(sequence)
    for command, (core, extra) in WORKFLOW_TOOLS.items():
        if used and used <= core | extra and used & core:
            return command
    return None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


@dataclass
class Habit:
    sequence: tuple[str, ...]
    runs: int
    share: float  # of the period's LLM runs
    cost_usd: float | None  # per run, over the runs with a price
    failure_rate: float  # runs that did not end ok
    misuse_rate: float  # runs with at least one misused tool call
    requests: list[str] = field(default_factory=list)
    covered_by: str | None = None
    workflow_cost_usd: float | None = None  # per run of that workflow in the period

    @property
    def shown(self) -> str:
        return show_sequence(self.sequence)

    def note(self) -> str:
        if self.covered_by is None:
            return "no workflow does this: a candidate" if self.runs >= 2 else "no workflow does this"
        if self.workflow_cost_usd is None or not self.cost_usd:
            return f"{self.covered_by} does this (no priced {self.covered_by} runs to compare costs)"
        ratio = self.workflow_cost_usd / self.cost_usd
        part = f"1/{round(1 / ratio)}" if 0 < ratio <= 0.5 else f"{ratio:.0%}"
        return f"{self.covered_by} does this for {part} of the cost"


@dataclass
class Insights:
    llm_runs: int
    habits: list[Habit]
    workflow_runs: dict[str, int]

    @property
    def candidates(self) -> list[Habit]:
        return [h for h in self.habits if h.covered_by is None and h.runs >= 2 and h.sequence]


def mine(runs: list[StoredRun], top: int = 10) -> Insights:
    llm = [r for r in runs if r.trigger in LLM_TRIGGERS]
    groups: dict[tuple[str, ...], list[StoredRun]] = defaultdict(list)
    for run in llm:
        groups[tool_sequence(run.steps)].append(run)
    workflow_costs = {
        cmd: _mean([r.cost_usd for r in runs if r.trigger == cmd and r.status == "ok"])
        for cmd in WORKFLOW_TOOLS
    }
    habits = []
    for sequence, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        covered = covering_workflow(sequence)
        habits.append(
            Habit(
                sequence=sequence,
                runs=len(members),
                share=len(members) / len(llm),
                cost_usd=_mean([r.cost_usd for r in members]),
                failure_rate=sum(r.status != "ok" for r in members) / len(members),
                misuse_rate=sum(bool(misuse(r.steps)) for r in members) / len(members),
                requests=list(dict.fromkeys(r.request for r in members if r.request))[:REQUESTS_SHOWN],
                covered_by=covered,
                workflow_cost_usd=workflow_costs.get(covered) if covered else None,
            )
        )
    counts = {cmd: sum(r.trigger == cmd for r in runs) for cmd in WORKFLOW_TOOLS}
    return Insights(len(llm), habits[:top], counts)


def summary_lines(found: Insights) -> list[str]:
    """The summary as Markdown lines: the CLI prints them, App Home shows them to admins."""
    if not found.llm_runs:
        return ["No LLM runs in this period."]
    lines = [f"{found.llm_runs} LLM runs; their most frequent tool sequences:"]
    for h in found.habits:
        cost = "price unknown" if h.cost_usd is None else f"${h.cost_usd:.4f}/run"
        lines.append(
            f"• `{h.shown}`: {h.runs} runs ({h.share:.0%}), {cost}, {h.failure_rate:.0%} failed, "
            f"{h.misuse_rate:.0%} misused a tool. {h.note()}"
        )
        lines += [f"    “{r[:120]}”" for r in h.requests]
    return lines


def candidate_cases(found: Insights) -> list[dict[str, Any]]:
    """A suite for the candidates: their requests, checked for the tools the model used."""
    cases = []
    for i, habit in enumerate(found.candidates, 1):
        for j, request in enumerate(habit.requests, 1):
            cases.append(
                {
                    "name": f"candidate {i}.{j}: {habit.shown}",
                    "request": request,
                    "checks": {"tools": sorted(tools_of(habit.sequence))},
                }
            )
    return cases
