"""Each case N times through each path, one attempt at a time (so latencies are not contended)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orchestrators.evals.cases import Case
from orchestrators.evals.results import Attempt, check

RunOne = Callable[[Case, str], Awaitable[Attempt]]  # the front door: runs one attempt, traced


def planned(cases: list[Case], paths: tuple[str, ...], repeat: int) -> int:
    return sum(len(c.paths(paths)) * repeat for c in cases if not c.skip)


async def run_suite(
    cases: list[Case],
    paths: tuple[str, ...],
    repeat: int,
    run_one: RunOne,
    progress: Callable[[Attempt], None] | None = None,
) -> list[Attempt]:
    attempts: list[Attempt] = []
    for case in cases:
        if case.skip:
            continue
        for path in case.paths(paths):
            for _ in range(repeat):
                attempt = await run_one(case, path)
                attempt.failed_checks = check(attempt, case.checks[path])
                attempts.append(attempt)
                if progress is not None:
                    progress(attempt)
    return attempts
