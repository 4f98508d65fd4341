"""Issue 14: RETENTION_DAYS purges old messages, runs with their steps and feedback, and finished
jobs, in the process that keeps the clock; newer rows and digest schedules stay."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import select

from bot.db import Database
from bot.db.models import (
    Conversation,
    DigestSchedule,
    Feedback,
    Job,
    Message,
    Run,
    Step,
    utcnow,
)
from bot.db.retention import purge
from bot.runtime import create_runtime
from bot.slack.server import start_clock
from tests.conftest import make_settings  # not make_bot: clock runtimes (start_clock), no HTTP app


async def seed(db: Database, age_days: float, tag: str) -> None:
    at = utcnow() - timedelta(days=age_days)
    async with db.session() as s:
        convo = Conversation(team_id="T1", channel_id="C1", thread_ts=tag, created_at=at, updated_at=at)
        s.add(convo)
        await s.flush()
        run = Run(trigger="mention", status="ok", conversation_id=convo.id, started_at=at)
        s.add(run)
        await s.flush()
        assert convo.id is not None and run.id is not None
        s.add(Message(conversation_id=convo.id, run_id=run.id, role="user", content=tag, created_at=at))
        s.add(Step(run_id=run.id, kind="model", name="m", created_at=at))
        s.add(Feedback(run_id=run.id, user_id="U1", value="good", created_at=at))
        s.add(Job(kind="turn", key=f"turn:{tag}", payload="{}", state="done", created_at=at))
        await s.commit()


async def contents(db: Database) -> dict[str, list[str]]:
    async with db.session() as s:
        return {
            "messages": [m.content or "" for m in (await s.exec(select(Message))).all()],
            "conversations": [c.thread_ts for c in (await s.exec(select(Conversation))).all()],
            "jobs": [j.key for j in (await s.exec(select(Job))).all()],
            "runs": [str(r.conversation_id) for r in (await s.exec(select(Run))).all()],
            "steps": [str(st.run_id) for st in (await s.exec(select(Step))).all()],
            "feedback": [f.user_id for f in (await s.exec(select(Feedback))).all()],
        }


async def test_purge_deletes_what_is_older_than_the_cutoff_and_keeps_the_rest(db_url) -> None:
    db = Database(db_url)
    await db.create_schema()
    try:
        await seed(db, 120, "old")
        await seed(db, 1, "new")
        async with db.session() as s:
            s.add(
                DigestSchedule(
                    team_id="T1", channel_id="C1", source_channel_id="C1", cron="0 9 * * *", timezone="UTC",
                    creator_id="U1", created_at=utcnow() - timedelta(days=400),
                )
            )  # fmt: skip
            await s.commit()
        counts = await purge(db, utcnow() - timedelta(days=90))
        assert counts == {
            "feedback": 1, "step": 1, "run": 1, "message": 1, "job": 1,
            "conversation": 1,
        }  # fmt: skip
        left = await contents(db)
        assert left["messages"] == ["new"] and left["conversations"] == ["new"]
        assert left["jobs"] == ["turn:new"]
        assert len(left["runs"]) == len(left["steps"]) == len(left["feedback"]) == 1
        assert len(await db.digests.all()) == 1  # schedules are configuration, not history
        assert await purge(db, utcnow() - timedelta(days=90)) == dict.fromkeys(counts, 0)
    finally:
        await db.close()


async def test_the_clock_process_purges_at_start(slack, db_url) -> None:
    settings = make_settings(slack, None, db_url, RUN_SCHEDULER="true", RETENTION_DAYS="30")
    rt = await create_runtime(settings)
    await seed(rt.db, 45, "stale")
    running = await start_clock(rt)
    try:
        async with asyncio.timeout(60):
            while (await contents(rt.db))["jobs"]:
                await asyncio.sleep(0.05)
        assert (await contents(rt.db))["messages"] == []
    finally:
        await running.stop(drain=1)


async def test_web_processes_without_the_clock_do_not_purge(slack, db_url) -> None:
    settings = make_settings(slack, None, db_url, RUN_SCHEDULER="false", RETENTION_DAYS="30")
    rt = await create_runtime(settings)
    await seed(rt.db, 45, "stale")
    running = await start_clock(rt)
    try:
        assert running.background == []
        assert (await contents(rt.db))["jobs"] == ["turn:stale"]
    finally:
        await running.stop(drain=1)
