"""Issue 6: /digest schedules, posted exactly once across restarts and scheduler processes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import update

from bot.db.models import DigestClaim, DigestSchedule
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply

ROOT = str(Path(__file__).resolve().parents[1])


def last_response(slack) -> str:
    return slack.responses[-1]["text"]


def an_hour_ahead() -> str:
    """A daily fire time whose last period (since yesterday's) covers the last hour, whenever now is:
    a fixed 09:00 left seeded messages of the last hour out between 09:00 and 10:00 UTC."""
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%H:%M")


async def digest(bot: Bot, slack, text: str, user: str = "U1", channel: str = "C1") -> str:
    before = len(slack.responses)
    await bot.command("/digest", text, user=user, channel=channel, response_url=slack.response_url("d"))
    await bot.idle()
    assert len(slack.responses) == before + 1
    return last_response(slack)


def digests_posted(slack, channel: str) -> list[dict]:
    return [m for m in slack.posted(channel=channel) if "Digest of" in json.dumps(m.get("blocks"))]


@pytest.fixture
async def dbot(make_bot: MakeBot, slack) -> Bot:
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    return await make_bot(scheduler={"retry_delay": 0})


async def test_add_list_remove(dbot: Bot, slack) -> None:
    text = await digest(dbot, slack, "add <#C3|support-digest> weekdays 09:00 from <#C2|random>")
    assert "Digest 1 set" in text and "#random" in text and "#support-digest" in text
    assert "every weekday at 09:00 (Europe/Berlin)" in text and "Next:" in text  # alice's own zone
    text = await digest(dbot, slack, "add <#C3|support-digest> daily 18:30 Asia/Tokyo quiet")
    assert "Digest 2 set" in text and "(Asia/Tokyo)" in text
    listed = await digest(dbot, slack, "list", channel="C3")
    assert "*1*" in listed and "*2*" in listed and "next " in listed and "quiet" in listed
    refused = await digest(dbot, slack, "remove 1", user="U2")
    assert "Only <@U1>" in refused
    assert "Digest 1 removed" in await digest(dbot, slack, "remove 1")
    assert "Digest 2 removed" in await digest(dbot, slack, "remove 2", user="UADMIN")
    assert "no digest 2" in (await digest(dbot, slack, "remove 2")).lower()
    assert await dbot.rt.db.digests.all() == []


@pytest.mark.parametrize(
    "text",
    [
        "add weekdays 09:00",
        "add <#C3|support-digest> daily 25:00",
        "add <#C3|support-digest> weekly funday 09:00",
        'add <#C3|support-digest> cron "61 * * * *"',
        "add <#C3|support-digest> daily 09:00 Mars/Olympus",
        "add <#C3|support-digest> daily 09:00 please",
        "remove abc",
        "explode",
    ],
)
async def test_bad_input_shows_an_example_and_stores_nothing(dbot: Bot, slack, text) -> None:
    reply = await digest(dbot, slack, text)
    assert "e.g. `/digest add #support-digest weekdays 09:00" in reply
    assert await dbot.rt.db.digests.all() == []


async def test_membership_and_bot_presence_are_checked(dbot: Bot, slack) -> None:
    slack.add_channel("G5", "execs", members=("U2",), is_private=True)
    slack.add_channel("C6", "no-bot", members=("U1",), bot_member=False)
    assert "not a member of #execs" in await digest(dbot, slack, "add <#G5|execs> daily 09:00")
    assert "not a member of #execs" in await digest(
        dbot, slack, "add <#C3|support-digest> daily 09:00 from <#G5|execs>"
    )
    assert "/invite @Switchboard" in await digest(dbot, slack, "add <#C6|no-bot> daily 09:00")
    assert await dbot.rt.db.digests.all() == []


async def test_run_posts_a_digest_with_its_period(dbot: Bot, slack, llm) -> None:
    slack.seed_messages("C2", 5, start_ts=time.time() - 3600, step=60, text="support ticket {i}")
    await digest(dbot, slack, f"add <#C3|support-digest> daily {an_hour_ahead()} UTC from <#C2|random>")
    llm.script(Reply(content="Five tickets came in."))
    reply = await digest(dbot, slack, "run 1")
    assert "posted" in reply
    (posted,) = digests_posted(slack, "C3")
    text = json.dumps(posted["blocks"], ensure_ascii=False)
    assert "Digest of #random" in text and "Five tickets came in." in text and "(UTC)" in text
    assert "support ticket 4" in llm.requests[0]["messages"][-1]["content"]
    schedule = await dbot.rt.db.digests.get(1)
    assert schedule.last_status == "posted" and schedule.failures == 0


async def test_quiet_period(dbot: Bot, slack, llm) -> None:
    await digest(dbot, slack, "add <#C3|support-digest> daily 09:00 UTC from <#C2|random> quiet")
    await digest(dbot, slack, "add <#C3|support-digest> daily 10:00 UTC from <#C2|random>")
    await digest(dbot, slack, "run 1")
    await digest(dbot, slack, "run 2")
    (posted,) = digests_posted(slack, "C3")
    assert "No activity in #random" in json.dumps(posted["blocks"])
    assert llm.requests == []


async def test_failure_is_recorded_retried_and_the_creator_told(dbot: Bot, slack) -> None:
    await digest(dbot, slack, "add <#C3|support-digest> daily 09:00 UTC from <#C2|random>")
    slack.channels["C2"].members.discard("UBOT")  # the bot was removed from the source channel
    schedule = await dbot.rt.db.digests.get(1)
    fire = datetime(2026, 11, 24, 9, tzinfo=UTC)
    await dbot.rt.digest_scheduler.run(schedule, fire)
    schedule = await dbot.rt.db.digests.get(1)
    assert schedule.last_status == "failed" and schedule.failures == 2  # first try and one retry
    assert "invite me" in schedule.last_error
    (dm,) = slack.posted(channel="DU1")
    assert "failed twice" in dm["text"] and "/digest remove 1" in dm["text"]
    assert [c.status for c in await queries.claims(dbot.rt.db, 1)] == ["failed"]
    # the same fire time is never attempted again, even after the failure
    assert await dbot.rt.digest_scheduler.run(schedule, fire) == "already posted"


async def test_a_schedule_fires_on_time(make_bot: MakeBot, slack, llm, db_url) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    slack.users["U1"]["is_admin"] = True  # only an admin may schedule more often than hourly
    harness = await make_bot(RUN_SCHEDULER="true", scheduler={"second": "*"})
    try:
        await digest(harness, slack, 'add <#C3|support-digest> cron "* * * * *" UTC from <#C2|random>')
        await slack.wait_for(lambda: digests_posted(slack, "C3"), timeout=30, what="a scheduled digest")
    finally:
        await harness.close()
    claims = await _claims(db_url)
    assert len(claims) >= 1 and all(c.status == "posted" for c in claims)


async def _claims(db_url: str) -> list[DigestClaim]:
    from bot.db import Database

    store = Database(db_url)
    try:
        return await queries.claims(store, 1)
    finally:
        await store.close()


async def test_restart_catches_up_once_and_never_twice(make_bot: MakeBot, slack, llm, db_url) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    missed = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    harness = await make_bot(RUN_SCHEDULER="true")
    try:
        await digest(harness, slack, f"add <#C3|support-digest> daily {missed:%H:%M} UTC from <#C2|random>")
        async with harness.rt.db.session() as s:  # it existed before the time it missed
            await s.exec(update(DigestSchedule).values(created_at=missed - timedelta(days=1)))
            await s.commit()
        assert digests_posted(slack, "C3") == []
        await harness.restart()  # the process was down at the fire time: caught up at start
        await harness.idle()
        assert len(digests_posted(slack, "C3")) == 1
        await harness.restart()  # and a second restart does not post it again
        await harness.idle()
        assert len(digests_posted(slack, "C3")) == 1
    finally:
        await harness.close()
    (claim,) = await _claims(db_url)
    assert claim.fire_time.replace(tzinfo=UTC) == missed and claim.status == "posted"


async def test_two_scheduler_processes_post_each_digest_once(make_bot: MakeBot, slack, llm, db_url) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    slack.users["U1"]["is_admin"] = True  # only an admin may schedule more often than hourly
    clock = {"second": "*", "sync_seconds": 0.2}
    first = await make_bot(RUN_SCHEDULER="true", scheduler=clock)
    second = await make_bot(RUN_SCHEDULER="true", scheduler=clock)
    try:
        await digest(first, slack, 'add <#C3|support-digest> cron "* * * * *" UTC from <#C2|random>')
        await slack.wait_for(lambda: len(digests_posted(slack, "C3")) >= 3, timeout=60, what="three digests")
        # the second process learned of the schedule from the table, and fires it too
        assert first.rt.digest_scheduler.next_run(1) and second.rt.digest_scheduler.next_run(1)
        await asyncio.sleep(0.5)
    finally:
        await first.close()
        await second.close()
    claims = await _claims(db_url)
    posted = digests_posted(slack, "C3")
    # both processes fired every second; each fire time was claimed, and posted, once
    assert len(posted) == len([c for c in claims if c.status == "posted"]) >= 3
    assert len({c.fire_time for c in claims}) == len(claims)


async def test_clock_process_posts_what_the_web_process_scheduled(
    make_bot: MakeBot, slack, llm, db_url, tmp_path
) -> None:
    """`python -m bot clock` (the Procfile's clock) reads schedules a web process stored."""
    import os
    import signal
    import sys

    slack.add_channel("C3", "support-digest", members=("U1",))
    web = await make_bot()  # RUN_SCHEDULER=false: a web process
    missed = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    try:
        await digest(web, slack, f"add <#C3|support-digest> daily {missed:%H:%M} UTC from <#C2|random>")
        async with web.rt.db.session() as s:
            await s.exec(update(DigestSchedule).values(created_at=missed - timedelta(days=1)))
            await s.commit()
        assert web.rt.digest_scheduler.next_run(1) is None  # the web process keeps no clock
    finally:
        await web.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    env |= {
        "PYTHONPATH": ROOT,
        "SLACK_BOT_TOKEN": "xoxb-clock",
        "SLACK_API_URL": slack.api_url,
        "OPENAI_API_KEY": "sk-clock",
        "OPENAI_BASE_URL": llm.base_url,
        "DATABASE_URL": db_url.replace("+aiosqlite", ""),
        "RUN_SCHEDULER": "true",
    }
    clock = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "clock", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        await slack.wait_for(lambda: digests_posted(slack, "C3"), timeout=120, what="the clock's digest")
    finally:
        clock.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(clock.communicate(), 300)
    assert clock.returncode == 0, err.decode()
    assert len(digests_posted(slack, "C3")) == 1
