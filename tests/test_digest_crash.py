"""After a crash every digest fire time is posted exactly once: jobs, takeover, Slack metadata.

A clock process SIGKILLed mid-digest leaves its fire time's job `running` under a lease nobody
renews; another process's work engine takes it over. One that died after posting but before the
database heard is found in the channel by the digest's metadata and only marked posted.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select, update

from bot.db import Database
from bot.db.models import DigestSchedule, Job
from bot.db.queue.jobs import NewJob
from bot.digests.delivery import EVENT_TYPE, PART_EVENT_TYPE, metadata, post_digest
from tests import queries
from tests.bot_process import BotProcess, bot_env
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.test_digest import digest, digests_posted

DEAD = "dead-host:4242:0badcafe"  # the owner of a lease whose process is gone


def job_key(fire: datetime) -> str:
    return f"digest:1:{fire.astimezone(UTC).isoformat()}"


async def digest_job(db: Database, fire: datetime) -> Job | None:
    async with db.session() as s:
        return (await s.exec(select(Job).where(Job.key == job_key(fire)))).first()


async def held_by(
    bot: Bot, fire: datetime, owner: str, *, lease: float, age: timedelta = timedelta()
) -> None:
    """(schedule 1, fire) recorded, claimed and started by `owner`, its lease `lease` seconds
    from now (negative: lapsed, the owner is dead); the engine stops meanwhile, so it cannot
    claim the job before it looks so."""
    await bot.rt.work.stop(drain=1)
    payload = {"schedule": 1, "fire_time": fire.astimezone(UTC).isoformat(), "manual": False}
    [(job_id, _)] = await bot.rt.db.jobs.add([NewJob("digest", job_key(fire), payload)])
    async with bot.rt.db.session() as s:
        await s.exec(
            update(Job)
            .where(col(Job.id) == job_id)
            .values(
                state="running",
                attempts=1,
                owner=owner,
                lease_expires=time.time() + lease,
                created_at=datetime.now(UTC) - age,
            )
        )
        await s.commit()
    assert await bot.rt.db.digests.claim(1, fire)
    await bot.rt.work.start()


async def add_daily(bot: Bot, slack, at: datetime) -> DigestSchedule:
    """Digest 1: #random into #support-digest daily at `at`, created a day before `at`."""
    await digest(bot, slack, f"add <#C3|support-digest> daily {at:%H:%M} UTC from <#C2|random>")
    async with bot.rt.db.session() as s:
        await s.exec(update(DigestSchedule).values(created_at=at - timedelta(days=1)))
        await s.commit()
    schedule = await bot.rt.db.digests.get(1)
    assert schedule is not None
    return schedule


def recent_fire() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)


async def expire_digest_leases(db: Database) -> None:
    """What a lease without renewals does: the dead holder's lease runs out."""
    async with db.session() as s:
        await s.exec(update(Job).where(col(Job.kind) == "digest").values(lease_expires=time.time() - 1))
        await s.commit()


async def wait_for_status(db: Database, status: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while [c.status for c in await queries.claims(db, 1)] != [status]:
        assert time.monotonic() < deadline, f"claims: {await queries.claims(db, 1)}"
        await asyncio.sleep(0.1)


async def test_a_clock_killed_mid_digest_is_taken_over_and_posted_once(
    make_bot: MakeBot, slack, llm, db_url, tmp_path
) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    fire = recent_fire()
    slack.seed_messages("C2", 3, start_ts=fire.timestamp() - 600, step=60, text="support ticket {i}")
    web = await make_bot()  # a web process stores the schedule
    try:
        await add_daily(web, slack, fire)
    finally:
        await web.close()
    store = Database(db_url)
    env = bot_env(slack, llm, db_url, RUN_SCHEDULER="true", WORK_LEASE_SECONDS="2")
    try:
        llm.script(Reply(content="The slow summary.", delay=120))
        first = await BotProcess(env, tmp_path, "clock").start()
        try:
            await llm.wait_for_requests(1, timeout=60)  # caught up at start; the summary is under way
        finally:
            await first.kill()
        assert digests_posted(slack, "C3") == []
        (claim,) = await queries.claims(store, 1)
        assert claim.status == "claimed"  # at-most-once would leave it so forever
        held = await digest_job(store, fire)
        assert held is not None and held.state == "running" and held.lease_expires > time.time()
        await asyncio.sleep(held.lease_expires - time.time() + 0.1)  # nobody renews it: it runs out

        llm.script(Reply(content="The summary after the crash."))
        second = await BotProcess(env, tmp_path, "clock").start()
        try:
            await wait_for_status(store, "posted")
        finally:
            await second.stop()
        assert second.proc is not None and second.proc.returncode == 0, second.log[-2000:]
        assert "redoing it after its process stopped" in second.log
        (posted,) = digests_posted(slack, "C3")
        assert "The summary after the crash." in str(posted["blocks"])
        assert posted["metadata"]["event_type"] == "switchboard_digest"
        assert posted["metadata"]["event_payload"]["digest"] == 1
        assert posted["metadata"]["event_payload"]["fire"] == fire.isoformat()
        done = await digest_job(store, fire)
        assert done is not None and done.state == "done" and done.owner is None  # released after posting
    finally:
        await store.close()


@pytest.fixture
async def sbot(make_bot: MakeBot, slack) -> Bot:
    """A bot with a clock (no schedule of its own fires in a test); its engine takes over lapsed jobs."""
    slack.add_channel("C3", "support-digest", members=("U1",))
    return await make_bot(RUN_SCHEDULER="true", scheduler={"retry_delay": 0})


async def crashed_at(bot: Bot, fire: datetime) -> None:
    """The state a process leaves when it dies holding (schedule 1, fire): claimed, lease lapsed."""
    await held_by(bot, fire, DEAD, lease=-1)


async def test_died_after_posting_before_marking_is_only_marked_posted(sbot: Bot, slack, llm) -> None:
    fire = recent_fire()
    # created after its fire time: the catch-up at start leaves it alone
    await digest(sbot, slack, f"add <#C3|support-digest> daily {fire:%H:%M} UTC from <#C2|random>")
    schedule = await sbot.rt.db.digests.get(1)
    assert schedule is not None
    # The dead process got its digest into Slack, exactly as the scheduler posts one, then died.
    await post_digest(sbot.rt.slack, schedule, "*Digest of #random* · the dead one's", fire)
    await crashed_at(sbot, fire)
    await wait_for_status(sbot.rt.db, "posted")
    await sbot.idle()
    (posted,) = digests_posted(slack, "C3")
    assert "the dead one's" in str(posted["blocks"])
    assert llm.requests == []  # not summarized again either
    history = [c for c in slack.calls_to("conversations.history") if c.params.get("channel") == "C3"]
    assert history and all(c.params.get("include_all_metadata") in (True, "true", "1") for c in history)
    assert float(history[0].params["oldest"]) < fire.timestamp()
    schedule = await sbot.rt.db.digests.get(1)
    assert schedule is not None and schedule.last_status == "posted"


async def test_a_takeover_deletes_the_parts_an_interrupted_post_left(sbot: Bot, slack, llm) -> None:
    fire = recent_fire()
    slack.seed_messages("C2", 3, start_ts=fire.timestamp() - 600, step=60, text="support ticket {i}")
    await digest(sbot, slack, f"add <#C3|support-digest> daily {fire:%H:%M} UTC from <#C2|random>")
    # Died between the parts of a long digest: the first is in Slack, the last (and marker) not.
    orphan = await sbot.rt.slack.chat_postMessage(
        channel="C3", text="Digest of #random, part one", metadata=metadata(1, fire, last=False)
    )
    other = await sbot.rt.slack.chat_postMessage(  # another fire time's part is not ours to delete
        channel="C3", text="part of another", metadata=metadata(1, fire - timedelta(days=1), last=False)
    )
    llm.script(Reply(content="Three tickets came in."))
    await crashed_at(sbot, fire)
    await wait_for_status(sbot.rt.db, "posted")
    await sbot.idle()
    assert slack.find("C3", orphan["ts"]) is None
    assert slack.find("C3", other["ts"]) is not None
    (posted,) = digests_posted(slack, "C3")
    assert "Three tickets came in." in str(posted["blocks"])
    assert posted["metadata"]["event_type"] == EVENT_TYPE
    assert len(llm.requests) == 1


async def test_a_live_lease_is_left_alone_and_an_expired_one_taken_once(
    make_bot: MakeBot, slack, llm
) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    bot = await make_bot(scheduler={"retry_delay": 0})  # no clock: we record fire times
    try:
        fire = recent_fire()
        slack.seed_messages("C2", 2, start_ts=fire.timestamp() - 600, step=60, text="ticket {i}")
        await digest(bot, slack, f"add <#C3|support-digest> daily {fire:%H:%M} UTC from <#C2|random>")
        scheduler = bot.rt.digest_scheduler
        await held_by(bot, fire, "alive-elsewhere", lease=60)
        schedule = await bot.rt.db.digests.get(1)
        assert schedule is not None
        await scheduler.record(schedule, fire)  # recorded again (another clock): still one job
        await bot.idle()
        assert digests_posted(slack, "C3") == [] and llm.requests == []  # its poster is alive
        stale = fire - timedelta(hours=2)  # older than GRACE: never posted this late
        await held_by(bot, stale, DEAD, lease=-1, age=timedelta(hours=2))
        await expire_digest_leases(bot.rt.db)
        await wait_for_status_of(bot.rt.db, fire, "posted")
        await bot.idle()
        assert len(digests_posted(slack, "C3")) == 1
        claims = {c.fire_time.replace(tzinfo=UTC): c.status for c in await queries.claims(bot.rt.db, 1)}
        assert claims == {fire: "posted", stale: "claimed"}
        gone = await digest_job(bot.rt.db, stale)
        assert gone is not None and gone.state == "interrupted"
        assert await scheduler.run(schedule, fire) == "already posted"
    finally:
        await bot.close()


async def wait_for_status_of(db: Database, fire: datetime, status: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while {c.fire_time.replace(tzinfo=UTC): c.status for c in await queries.claims(db, 1)}.get(
        fire
    ) != status:
        assert time.monotonic() < deadline, f"claims: {await queries.claims(db, 1)}"
        await asyncio.sleep(0.1)


async def test_a_long_digest_marks_only_its_last_part_posted(slack, llm, make_bot: MakeBot) -> None:
    slack.add_channel("C3", "support-digest", members=("U1",))
    bot = await make_bot(scheduler={"retry_delay": 0})
    slack.seed_messages("C2", 2, start_ts=time.time() - 600, step=60, text="ticket {i}")
    await digest(bot, slack, "add <#C3|support-digest> daily 09:00 UTC from <#C2|random>")
    llm.script(Reply(content="\n\n".join(f"Paragraph {i}: " + "busy day " * 100 for i in range(20))))
    assert "posted" in await digest(bot, slack, "run 1")
    parts = slack.posted(channel="C3")
    assert len(parts) == 2
    (claim,) = await queries.claims(bot.rt.db, 1)
    expected = {"digest": 1, "fire": claim.fire_time.replace(tzinfo=UTC).isoformat()}
    assert [p["metadata"]["event_type"] for p in parts] == [PART_EVENT_TYPE, EVENT_TYPE]
    assert all(p["metadata"]["event_payload"].items() >= expected.items() for p in parts)
