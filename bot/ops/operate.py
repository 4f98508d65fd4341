"""Operator commands: `switchboard migrate` and `switchboard runs` (read a run without SQL)."""

from __future__ import annotations

import argparse
from datetime import datetime

from bot.db import schema
from bot.db.models import Run, Step
from bot.runtime import open_database
from bot.settings import Settings


async def migrate(settings: Settings, autogenerate: str | None = None) -> int:
    db = open_database(settings)
    try:
        if autogenerate:
            async with db.engine.connect() as conn:
                script = await conn.run_sync(schema.new_revision, autogenerate)
            print(f"Wrote {script.path}: review it, then commit it with the models.py change.")
            return 0
        before = await schema.migrate(db.engine, db.url)
    finally:
        await db.close()
    print(migrate_report(before))
    return 0


def migrate_report(before: schema.SchemaState) -> str:
    head = schema.head()
    if before.status == "current":
        return f"The database schema is already current (revision {head})."
    if before.status == "unstamped":
        return f"Stamped the database made before migrations as {schema.BASE_REVISION}, upgraded to {head}."
    if before.status == "empty":
        return f"Created the schema (revision {head})."
    return f"Upgraded the database schema from revision {before.current} to {head}."


async def runs(settings: Settings, args: argparse.Namespace) -> int:
    db = open_database(settings)
    try:
        await db.prepare(auto_migrate=False)
        if args.runs_command == "show":
            run = await db.runs.get(args.run_id)
            if run is None:
                print(f"There is no run {args.run_id}.")
                return 1
            print(format_run(run, await db.runs.steps(args.run_id)))
            return 0
        recent = await db.runs.latest(getattr(args, "limit", 20))
    finally:
        await db.close()
    print(format_runs(recent) if recent else "No runs yet.")
    return 0


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def format_runs(runs: list[Run]) -> str:
    lines = [f"{'run':>6}  {'started (UTC)':19}  {'trigger':12}  {'status':11}  {'took':>8}  tokens"]
    for r in runs:
        lines.append(
            f"{r.id:>6}  {_when(r.started_at)}  {r.trigger[:12]:12}  {r.status:11}  "
            f"{_ms(r.duration_ms):>8}  {r.prompt_tokens}+{r.completion_tokens}"
        )
    return "\n".join(lines)


def format_run(run: Run, steps: list[Step]) -> str:
    where = " ".join(x for x in (run.team_id, run.channel_id, run.thread_ts) if x)
    lines = [
        f"run {run.id}: {run.trigger}, {run.status}, {_ms(run.duration_ms)}, "
        f"started {_when(run.started_at)} UTC",
        f"  where: {where or '-'}  user: {run.user_id or '-'}  model: {run.model or '-'}",
        f"  tokens: {run.prompt_tokens} prompt + {run.completion_tokens} completion "
        f"in {run.llm_calls} model calls",
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    lines.append(f"  steps ({len(steps)}):" if steps else "  no steps recorded")
    for i, step in enumerate(steps, 1):
        tokens = f"  {step.prompt_tokens}+{step.completion_tokens} tokens" if step.kind == "model" else ""
        output = f"  -> {step.output_chars} chars" if step.kind != "model" else ""
        lines.append(f"  {i:>3}. {step.kind} {step.name} ({_ms(step.duration_ms)}){tokens}{output}")
        if step.arguments:
            lines.append(f"       arguments: {step.arguments[:300]}")
        if step.error:
            lines.append(f"       error: {step.error}")
    return "\n".join(lines)
