"""`switchboard eval CASES.yml`: each case through the LLM orchestrator and its workflow, measured.

Attempts go through the same front door as Slack's slash commands (`bot.work.command_run.execute_text`:
channel
settings, daily caps, the registry with MCP tools, the gate, traced runs), on a database of their
own that is thrown away, with Slack switched off: nothing is posted, nobody is asked to approve,
so a call that would need approval is refused and counted. The LLM path is `/ask`, the model
orchestrating; the workflow path is the case's command. Metrics come from each run's row and
its `step` rows, as recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bot.logging_setup import configure_logging
from bot.runtime import Runtime, create_runtime
from bot.settings import ConfigError, Settings, load_settings
from orchestrators.evals.cases import PATHS, Case, CaseError, parse_cases
from orchestrators.evals.html import render_html
from orchestrators.evals.results import Attempt, CaseReport, report
from orchestrators.evals.runner import planned, run_suite
from orchestrators.evals.tape import Tape
from orchestrators.evals.traces import StepView
from tools.toolkit.errors import InvariantError

TEAM, CHANNEL, USER = "eval", "eval", "eval"
COLUMNS = ("case", "path", "pass", "sequences", "misuse", "model calls", "tokens in/out", "cost", "p50/p95")


async def attempt(rt: Runtime, case: Case, path: str) -> Attempt:
    """One traced run of `case` through `path`, read back from its run and step rows."""
    from bot.work.command_run import execute_text

    if path == "llm":
        command, text = "/ask", case.request
    else:
        command, _, text = (case.workflow or "").partition(" ")
    reply = await execute_text(rt, command, text, user=USER, channel=CHANNEL, team=TEAM)
    answer = reply.text.removeprefix(f"> {case.request}\n\n") if path == "llm" else reply.text
    if reply.run_id is None:  # refused before any run started (usage, a used-up daily cap)
        return Attempt(case.name, path, answer, "refused")
    run = await rt.db.runs.get(reply.run_id)
    if run is None:
        raise InvariantError(f"run {reply.run_id} is not stored")
    steps = [StepView(s.kind, s.name, s.arguments, s.error) for s in await rt.db.runs.steps(reply.run_id)]
    return Attempt(
        case=case.name,
        path=path,
        answer=answer,
        status=run.status,
        steps=steps,
        llm_calls=run.llm_calls,
        prompt_tokens=run.prompt_tokens,
        completion_tokens=run.completion_tokens,
        cost_usd=run.cost_usd,
        latency_ms=run.duration_ms or 0.0,
        run_id=run.id,
    )


async def evaluate(
    settings: Settings,
    cases: list[Case],
    *,
    repeat: int = 1,
    paths: tuple[str, ...] = PATHS,
    tape: Tape | None = None,
    progress: Progress | None = None,
) -> list[Attempt]:
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'eval.db'}"
        rt = await create_runtime(settings.model_copy(update={"database_url": db_url, "auto_migrate": True}))
        rt.slack_available = False  # post nothing, ask nobody
        rt.tool_layer = tape
        task = progress.add_task("evaluating", total=planned(cases, paths, repeat)) if progress else None
        try:

            def step(a: Attempt) -> None:
                if progress is not None and task is not None:
                    progress.update(task, advance=1, description=f"{a.case} ({a.path})")

            return await run_suite(cases, paths, repeat, lambda c, p: attempt(rt, c, p), step)
        finally:
            await rt.close()


def _money(value: float | None) -> str:
    return "price unknown" if value is None else f"${value:.6f}"


def table(reports: list[CaseReport]) -> Table:
    t = Table(title="LLM or code? (per run: averages; latency p50/p95)")
    for col in COLUMNS:
        t.add_column(col, overflow="fold")
    for r in reports:
        if r.case.skip:
            t.add_row(r.case.name, "-", "skipped", r.case.skip, "", "", "", "", "")
            continue
        for path, s in r.paths.items():
            seqs = "\n".join(f"{n}× {seq}" for seq, n in s.sequences.items())
            bad = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.misuse.items() if v) or "0"
            if s.replay_misses:
                bad += f"; replay misses {s.replay_misses}"
            t.add_row(
                r.case.name,
                path,
                f"{s.passed}/{s.runs}",
                seqs,
                bad,
                f"{s.llm_calls:.1f}",
                f"{s.prompt_tokens:.0f}/{s.completion_tokens:.0f}",
                _money(s.cost_usd),
                f"{s.latency_p50_ms:.0f}/{s.latency_p95_ms:.0f} ms",
            )
    return t


def print_report(out: Console, reports: list[CaseReport]) -> None:
    out.print(table(reports))
    for r in reports:
        if r.verdict:
            out.print(f"[bold]{r.case.name}[/bold]: {r.verdict}", highlight=False)
        for path, s in r.paths.items():
            for why, n in s.failures.items():
                out.print(f"  [yellow]{r.case.name} ({path}): {why} ×{n}[/yellow]", highlight=False)


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every attempt passed its checks, 1 when any failed, 2 on bad input."""
    paths = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    if not paths or set(paths) - set(PATHS) or args.repeat < 1:
        print("switchboard eval: --paths takes llm, workflow or both; --repeat at least 1", file=sys.stderr)
        return 2
    try:
        cases = parse_cases(args.cases.read_text())
        settings = load_settings(need_slack=False)
        tape = Tape.load(args.replay) if args.replay else Tape("record") if args.record else None
    except (OSError, CaseError, ConfigError, ValueError) as exc:
        print(f"switchboard eval: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, level="WARNING")
    err = Console(stderr=True)
    if not settings.llm_configured:
        err.print("No model configured (OPENAI_API_KEY / OPENAI_BASE_URL): the LLM path cannot answer.")
    with Progress(console=err, transient=True, disable=args.json) as progress:
        job = evaluate(settings, cases, repeat=args.repeat, paths=paths, tape=tape, progress=progress)
        attempts = asyncio.run(job)
    reports = report(cases, attempts)
    if args.record and tape is not None:
        tape.save(args.record)
        err.print(f"recorded {len(tape.entries)} tool results in {args.record}")
    if tape is not None and tape.mode == "replay":
        err.print(f"replay: {tape.hits} served, {len(tape.misses)} missed (not recorded; no live call)")
        for key in dict.fromkeys(tape.misses):
            err.print(f"  miss: {key[:200]}", highlight=False)
    meta = {"model": settings.openai_model, "repeat": args.repeat, "paths": list(paths)}
    if args.json:
        print(json.dumps({**meta, "cases": [r.as_dict() for r in reports]}, indent=2, default=str))
    else:
        print_report(Console(highlight=False), reports)
    if args.html:
        args.html.write_text(render_html(reports, {**meta, "paths": ", ".join(paths)}))
        err.print(f"wrote {args.html}")
    return 0 if all(a.passed for a in attempts) else 1
