"""`switchboard insights`: the model's habits in the stored runs, and which should be workflows.

Reads runs, their steps and (for conversations) the asker's message; the analysis itself is
orchestrators/evals/insights.py. Admins see the same summary in App Home.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import datetime, timedelta

from sqlmodel import col, select

from bot.db import Database
from bot.db.models import Message, Run, Step, utcnow
from bot.runtime import open_database
from bot.settings import Settings
from orchestrators.evals.cases import case_yaml
from orchestrators.evals.insights import (
    Insights,
    StoredRun,
    candidate_cases,
    mine,
    parse_since,
    summary_lines,
)
from orchestrators.evals.traces import StepView

MAX_RUNS = 20_000  # the newest runs of the period: enough to see habits, and bounded
HOME_RUNS = 2_000  # App Home is drawn on every open: a smaller sample


async def stored_runs(db: Database, since: datetime, limit: int = MAX_RUNS) -> list[StoredRun]:
    """The period's finished runs (the newest `limit`), their steps and their askers' messages."""
    chosen = (
        select(Run.id)
        .where(col(Run.started_at) >= since, col(Run.status) != "running")
        .order_by(col(Run.id).desc())
        .limit(limit)
    )
    async with db.session() as s:
        runs = list((await s.exec(select(Run).where(col(Run.id).in_(chosen)))).all())
        steps: dict[int, list[StepView]] = defaultdict(list)
        rows = await s.exec(select(Step).where(col(Step.run_id).in_(chosen)).order_by(col(Step.id)))
        for step in rows.all():
            steps[step.run_id].append(StepView(step.kind, step.name, step.arguments, step.error))
        conversations = select(Run.conversation_id).where(col(Run.id).in_(chosen))
        asked: dict[int, list[Message]] = defaultdict(list)
        q = (
            select(Message)
            .where(col(Message.conversation_id).in_(conversations), Message.role == "user")
            .order_by(col(Message.id))
        )
        for m in (await s.exec(q)).all():
            asked[m.conversation_id].append(m)
    runs.sort(key=lambda r: -(r.id or 0))
    return [
        StoredRun(r.id or 0, r.trigger, r.status, r.cost_usd, steps[r.id or 0], _request(r, asked))
        for r in runs
    ]


def _request(run: Run, asked: dict[int, list[Message]]) -> str | None:
    """The asker's last message before the run ended (runs keep no request text themselves)."""
    if run.conversation_id is None:
        return None
    end = run.finished_at or run.started_at
    before = [m for m in asked[run.conversation_id] if end is None or _naive(m.created_at) <= _naive(end)]
    last = before[-1].content if before else None
    return last.strip() if isinstance(last, str) and last.strip() else None


def _naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None)  # SQLite hands datetimes back without their zone


async def insights(db: Database, since: timedelta, limit: int = MAX_RUNS) -> Insights:
    return mine(await stored_runs(db, utcnow() - since, limit))


async def home_lines(db: Database, since: timedelta = timedelta(days=30), top: int = 5) -> list[str]:
    found = await insights(db, since, HOME_RUNS)
    found.habits = found.habits[:top]
    return summary_lines(found)


async def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"switchboard insights: {exc}", file=sys.stderr)
        return 2
    db = open_database(settings)
    try:
        await db.prepare(auto_migrate=False)
        found = await insights(db, since)
    finally:
        await db.close()
    print(f"Switchboard insights, last {args.since}:")
    print("\n".join(summary_lines(found)))
    counts = ", ".join(f"{cmd} {n}" for cmd, n in found.workflow_runs.items())
    print(f"Workflow runs in the period: {counts}.")
    cases = candidate_cases(found)
    if args.cases and cases:
        args.cases.write_text(case_yaml(cases))
        print(f"Wrote {len(cases)} candidate cases to {args.cases}: switchboard eval {args.cases}")
    elif found.candidates and not args.cases:
        print("Candidates found: add --cases FILE to write a suite that tests them.")
    return 0
