"""One attempt's outcome, its checks, and the per-case, per-path summary with its verdict."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from orchestrators.evals.cases import Case, Checks
from orchestrators.evals.traces import (
    MISUSE_KINDS,
    StepView,
    misuse,
    replay_misses,
    show_sequence,
    tool_sequence,
    tools_ran,
)


@dataclass
class Attempt:
    """One run of one case through one path, as its trace recorded it."""

    case: str
    path: str  # llm | workflow
    answer: str
    status: str  # the run's status: ok limited failed ... ("refused" when no run started)
    steps: list[StepView] = field(default_factory=list)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: the model has no price
    latency_ms: float = 0.0
    run_id: int | None = None
    failed_checks: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "ok" and not self.failed_checks


def in_order(wanted: tuple[str, ...], ran: list[str]) -> bool:
    it = iter(ran)
    return all(any(name == w for name in it) for w in wanted)


def check(attempt: Attempt, checks: Checks) -> list[str]:
    """What the attempt got wrong against the case's checks (empty: it passed them)."""
    ran = tools_ran(attempt.steps)
    answer = attempt.answer.lower()
    failed = [f"tool {t} did not run" for t in checks.tools if t not in ran]
    if checks.tools_sequence and not in_order(checks.tools_sequence, ran):
        failed.append(f"tools not in order {' → '.join(checks.tools_sequence)}")
    failed += [f"answer lacks {s!r}" for s in checks.contains if s.lower() not in answer]
    failed += [f"answer has {s!r}" for s in checks.not_contains if s.lower() in answer]
    if checks.max_cost_usd is not None:
        if attempt.cost_usd is None:
            failed.append("cost ceiling set, but the model's price is unknown")
        elif attempt.cost_usd > checks.max_cost_usd:
            failed.append(f"cost ${attempt.cost_usd:.6f} > ${checks.max_cost_usd:g}")
    if checks.max_latency_ms is not None and attempt.latency_ms > checks.max_latency_ms:
        failed.append(f"latency {attempt.latency_ms:.0f} ms > {checks.max_latency_ms:g} ms")
    return failed


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class PathSummary:
    case: str
    path: str
    runs: int
    passed: int
    sequences: dict[str, int]  # shown sequence -> how many runs took it
    misuse: dict[str, int]
    replay_misses: int
    llm_calls: float  # per run, averaged
    prompt_tokens: float
    completion_tokens: float
    cost_usd: float | None  # per run, averaged; None when any run's price is unknown
    latency_p50_ms: float
    latency_p95_ms: float
    failures: dict[str, int]  # failed check or status -> count

    @property
    def pass_rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    @property
    def misuse_total(self) -> int:
        return sum(self.misuse.values())


def summarize_path(case: str, path: str, attempts: list[Attempt]) -> PathSummary:
    n = len(attempts) or 1
    sequences = Counter(show_sequence(tool_sequence(a.steps)) for a in attempts)
    found: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for a in attempts:
        found.update(misuse(a.steps))
        if a.status != "ok":
            failures[f"run {a.status}"] += 1
        failures.update(a.failed_checks)
    costs = [a.cost_usd for a in attempts]
    latencies = [a.latency_ms for a in attempts]
    return PathSummary(
        case=case,
        path=path,
        runs=len(attempts),
        passed=sum(a.passed for a in attempts),
        sequences=dict(sequences.most_common()),
        misuse={k: found[k] for k in MISUSE_KINDS},
        replay_misses=sum(replay_misses(a.steps) for a in attempts),
        llm_calls=sum(a.llm_calls for a in attempts) / n,
        prompt_tokens=sum(a.prompt_tokens for a in attempts) / n,
        completion_tokens=sum(a.completion_tokens for a in attempts) / n,
        cost_usd=None if any(c is None for c in costs) else sum(c or 0.0 for c in costs) / n,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        failures=dict(failures.most_common()),
    )


def _times(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "∞x"


def verdict(llm: PathSummary, workflow: PathSummary) -> str:
    """One line: how the workflow compares with the model on this case."""
    if workflow.pass_rate == llm.pass_rate:
        answers = "same answers" if workflow.pass_rate == 1 else f"same pass rate ({workflow.pass_rate:.0%})"
    elif workflow.pass_rate > llm.pass_rate:
        answers = f"passes more ({workflow.pass_rate:.0%} vs {llm.pass_rate:.0%})"
    else:
        answers = f"passes less ({workflow.pass_rate:.0%} vs {llm.pass_rate:.0%})"
    if workflow.cost_usd is None or llm.cost_usd is None:
        cost = "cost: price unknown"
    elif workflow.cost_usd <= llm.cost_usd:
        cost = f"{_times(llm.cost_usd, workflow.cost_usd)} cheaper"
    else:
        cost = f"{_times(workflow.cost_usd, llm.cost_usd)} dearer"
    w, m = len(workflow.sequences), len(llm.sequences)
    seq = f"{w} sequence{'s' * (w != 1)} vs {m}"
    speed = (
        f"{_times(llm.latency_p50_ms, workflow.latency_p50_ms)} faster (p50)"
        if workflow.latency_p50_ms <= llm.latency_p50_ms
        else f"{_times(workflow.latency_p50_ms, llm.latency_p50_ms)} slower (p50)"
    )
    misused = f", model misused tools {llm.misuse_total}x" if llm.misuse_total else ""
    return f"workflow: {answers}, {cost}, {seq}, {speed}{misused}"


@dataclass
class CaseReport:
    case: Case
    paths: dict[str, PathSummary]
    verdict: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.case.name,
            "request": self.case.request,
            "workflow": self.case.workflow,
            "skip": self.case.skip,
            "verdict": self.verdict,
            "paths": {
                p: {**vars(s), "pass_rate": s.pass_rate, "misuse_total": s.misuse_total}
                for p, s in self.paths.items()
            },
        }


def report(cases: list[Case], attempts: list[Attempt]) -> list[CaseReport]:
    out = []
    for case in cases:
        paths: dict[str, PathSummary] = {}
        for path in ("llm", "workflow"):
            mine = [a for a in attempts if a.case == case.name and a.path == path]
            if mine:
                paths[path] = summarize_path(case.name, path, mine)
        both = "llm" in paths and "workflow" in paths
        out.append(CaseReport(case, paths, verdict(paths["llm"], paths["workflow"]) if both else None))
    return out
