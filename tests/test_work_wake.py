"""Issue 22: on Postgres, work recorded by one process wakes an idle other one (LISTEN/NOTIFY),
also after the server restarted; behind a transaction pool without a direct URL, processes poll.

Real `python -m bot` processes on a throwaway server of the test's own (it is restarted). Their
poll is 10 minutes, so a job started within the test's patience was started by a wake.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from bot.db import Database
from bot.settings import ConfigError
from bot.work import Job, WorkEngine
from bot.work.wake import Waker, waker_for
from tests.bot_process import BotProcess, bot_env
from tests.conftest import make_settings  # settings only (which waker); bots are real processes here
from tests.fakes.slack_requests import event_body, mention
from tests.postgres import fresh_database, postgres_server
from tests.test_crash_recovery import said, slow_then_fast, texts

POLL = "600"  # WORK_POLL_SECONDS: far longer than any wait below
PATIENCE = 30.0  # seconds a wake may take on a loaded machine (it takes milliseconds)


async def test_a_job_recorded_by_one_process_is_started_by_an_idle_other_one_also_after_a_restart(
    slack, llm, tmp_path
) -> None:
    slow_then_fast(llm, first_delay=300.0)  # A's first answer holds its only slot
    with postgres_server() as server:
        url = await fresh_database(server.url)
        env = bot_env(slack, llm, url, WORK_POLL_SECONDS=POLL)
        a = await BotProcess(env | {"WORK_CONCURRENCY": "1"}, tmp_path, "serve").start()
        b: BotProcess | None = None
        try:
            async with aiohttp.ClientSession() as http:
                assert await a.event(http, event_body(said(slack, mention("<@UBOT> one", ts="1.1")))) == 200
                await llm.wait_for_requests(1, timeout=PATIENCE)  # A is busy: it has no room now
                b = await BotProcess(env, tmp_path, "serve").start()

                second = mention("<@UBOT> two", channel="C2", user="U2", ts="2.1")
                assert await a.event(http, event_body(said(slack, second))) == 200
                await slack.wait_for(lambda: texts(slack, "C2") == ["answer to two"], PATIENCE, "B's answer")

                server.restart()
                await slack.wait_for(lambda: "listening for new work again" in b.log, PATIENCE, "B relistens")
                third = mention("<@UBOT> three", channel="C2", user="U2", ts="3.1")  # a new conversation
                assert await a.event(http, event_body(said(slack, third))) == 200
                answers = ["answer to two", "answer to three"]
                await slack.wait_for(lambda: texts(slack, "C2") == answers, PATIENCE, "B again")
            assert "answer to one" not in texts(slack, "C1")  # A still holds it: B took nothing of A's
        finally:
            await a.kill()
            if b is not None:
                await b.kill()


async def test_a_wait_for_a_job_another_engine_runs_is_answered_by_its_finish() -> None:
    """Two engines (as two processes would): the one that records and waits does not run the kind,
    so only the other's finish, NOTIFYed "done", can end the wait long before a poll."""
    with postgres_server() as server:
        url = await fresh_database(server.url)
        db = Database(url)
        await db.create_schema()
        recorder = WorkEngine(db, poll_seconds=float(POLL), waker=Waker(url))
        runner = WorkEngine(db, poll_seconds=float(POLL), waker=Waker(url))
        ran: list[int] = []

        async def run(job: Job) -> None:
            ran.append(job.id)

        recorder.kind("other", run)  # claims nothing of kind "x"
        runner.kind("x", run)
        await recorder.start()
        await runner.start()
        try:
            async with asyncio.timeout(PATIENCE):
                while not (
                    recorder.waker and recorder.waker.listening and runner.waker and runner.waker.listening
                ):
                    await asyncio.sleep(0.02)
                job_id, new = await recorder.submit("x", "wake:1", {})
                assert new
                assert await asyncio.wait_for(recorder.wait(job_id), PATIENCE) == "done"
            assert ran == [job_id]
        finally:
            await recorder.stop(1)
            await runner.stop(1)
            await db.close()


async def test_behind_a_transaction_pool_without_a_direct_url_processes_poll_and_say_so(
    slack, caplog: pytest.LogCaptureFixture
) -> None:
    pooled = "postgresql://sb@127.0.0.1:6432/app"
    with caplog.at_level(logging.INFO, logger="bot.work.wake"):
        assert waker_for(make_settings(slack, None, pooled, DB_PGBOUNCER="true")) is None
    assert "DATABASE_LISTEN_URL is not set" in caplog.text
    direct = make_settings(
        slack, None, pooled, DB_PGBOUNCER="true", DATABASE_LISTEN_URL="postgres://sb@db/app"
    )
    assert isinstance(waker_for(direct), Waker)
    assert isinstance(waker_for(make_settings(slack, None, pooled)), Waker)
    assert waker_for(make_settings(slack, None, "sqlite:///x.db")) is None
    with pytest.raises(ConfigError, match="DATABASE_LISTEN_URL"):
        make_settings(slack, None, pooled, DATABASE_LISTEN_URL="sqlite:///x.db")
