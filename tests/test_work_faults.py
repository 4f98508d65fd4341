"""Issue 22, item 5, at the work engine: a job the database failed under is redone, not failed; a
graceful stop keeps renewing the leases of the answers it drains; a lease that lapsed while the
database was away is not taken over before its holder could renew it (on either database)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from bot.db import Database
from bot.db.queue.inbox import FORGET_BATCH, Inbox, Marks
from bot.db.queue.jobs import NewJob
from bot.work import Job, JobLost, WorkEngine


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.create_schema()
    try:
        yield database
    finally:
        await database.close()


def engine(db: Database, lease_seconds: float = 30.0) -> WorkEngine:
    return WorkEngine(db, lease_seconds=lease_seconds, poll_seconds=0.05)


async def state_of(db: Database, job_id: int) -> tuple[str, int]:
    job = await db.jobs.get(job_id)
    assert job is not None
    return job.state, job.attempts


async def test_a_job_the_database_failed_under_is_redone_not_failed(db: Database) -> None:
    work, attempts = engine(db), []

    async def run(job: Job) -> None:
        attempts.append(job.redo)
        if len(attempts) == 1:  # as asyncpg's error reaches a handler when the server restarts
            raise sa_exc.OperationalError("SELECT 1", None, ConnectionResetError("server closed"))

    work.kind("fragile", run)
    await work.start()
    try:
        job_id, _ = await work.submit("fragile", "fragile:1", {})
        assert await asyncio.wait_for(work.wait(job_id), 20) == "done"
    finally:
        await work.stop(drain=1)
    assert attempts == [False, True]  # the redo knows an attempt came first (adopts what it showed)
    assert await state_of(db, job_id) == ("done", 1)  # redone in place: no attempt spent


async def test_a_job_that_fails_by_itself_still_fails(db: Database) -> None:
    work = engine(db)

    async def run(job: Job) -> None:
        raise ValueError("a bug, not the database")

    work.kind("buggy", run)
    await work.start()
    try:
        job_id, _ = await work.submit("buggy", "buggy:1", {})
        assert await asyncio.wait_for(work.wait(job_id), 20) == "failed"
    finally:
        await work.stop(drain=1)
    assert await state_of(db, job_id) == ("failed", 1)


async def test_a_graceful_stop_renews_the_leases_of_what_it_drains(db: Database) -> None:
    """The stopping process finishes a job longer than its lease; the other never redoes it."""
    stopping, other, runs = engine(db, lease_seconds=0.6), engine(db, lease_seconds=0.6), []
    started = asyncio.Event()

    async def run(job: Job) -> None:
        runs.append(job.engine.owner)
        started.set()
        await asyncio.sleep(3.0)  # five leases

    stopping.kind("long", run)
    other.kind("long", run)
    await stopping.start()
    try:
        job_id, _ = await stopping.submit("long", "long:1", {})
        await asyncio.wait_for(started.wait(), 20)
        await other.start()
        assert await stopping.stop(drain=30) == 0  # finished within the drain: nothing handed over
        assert await state_of(db, job_id) == ("done", 1)
    finally:
        await other.stop(drain=1)
    assert runs == [stopping.owner]


async def test_a_lease_that_lapsed_while_the_database_was_away_waits_for_its_holder(db: Database) -> None:
    holder, owner = engine(db, lease_seconds=0.5), "a process that could not renew"
    job_id, _ = (await db.jobs.add([NewJob("held", "held:1", {})]))[0]
    assert [c.id for c in await db.jobs.claim(owner, 0.1, 10, 0, ["held"])] == [job_id]
    await asyncio.sleep(0.2)  # lapsed
    db.faults.now()  # this database was just away
    assert await db.jobs.claim(holder.owner, 0.5, 10, 0, ["held"], quiet_for=30) == []
    taken = await db.jobs.claim(holder.owner, 0.5, 10, 0, ["held"], quiet_for=0)
    assert [c.id for c in taken] == [job_id]  # the same claim without a recent fault takes it


async def test_a_lease_left_to_its_holder_keeps_its_queue_and_its_slot(db: Database) -> None:
    """While a lapsed lease is left to its holder (the database was just away), the holder may be
    at work: the next job of its queue and its person's next job wait too (they ran beside it)."""
    ((first, _),) = await db.jobs.add([NewJob("held", "held:1", {}, queue="thread", person="U1")])
    assert [c.id for c in await db.jobs.claim("holder", -1, 1, 0, ["held"])] == [first]  # lapsed
    behind = [NewJob("held", "held:2", {}, queue="thread"), NewJob("held", "held:3", {}, person="U1")]
    await db.jobs.add(behind)
    db.faults.now()  # this database was just away
    waiting = await db.jobs.claim("other", 30, 10, 1, ["held"], quiet_for=30)
    assert waiting == [] and waiting.held_back
    taken = await db.jobs.claim("other", 30, 10, 1, ["held"], quiet_for=0)
    assert [c.id for c in taken] == [first]  # taken over; the two behind it still wait for it


async def test_a_holder_paused_past_its_lease_learns_it_before_showing_anything(db: Database) -> None:
    paused, other = engine(db, lease_seconds=0.3), engine(db)
    job_id, _ = (await db.jobs.add([NewJob("held", "held:2", {})]))[0]
    (row,) = await db.jobs.claim(paused.owner, 0.3, 10, 0, ["held"])
    job = Job(**vars(row), engine=paused, held_at=time.monotonic())
    await job.still_ours()  # just claimed: known without asking
    await asyncio.sleep(0.6)  # paused past its lease (load, a stop-the-world pause); taken over
    assert [c.id for c in await db.jobs.claim(other.owner, 30, 10, 0, ["held"])] == [job_id]
    with pytest.raises(JobLost):
        await job.still_ours()


async def test_new_work_is_its_recorders_for_a_moment_then_anyones(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes woken for one new job raced to claim it, and the loser's claim was a
    transaction spent for nothing: reserved for its recorder, other claims pass it over (and the
    jobs of its queue behind it), and take it once the reservation lapses (the recorder died)."""
    ((first, _), (behind, _)) = await db.jobs.add(
        [NewJob("held", "held:r1", {}, queue="q"), NewJob("held", "held:r2", {}, queue="q")], "recorder"
    )
    assert not await db.jobs.claimable(["held"], "other")
    assert await db.jobs.claim("other", 30, 10, 0, ["held"]) == []
    assert await db.jobs.claimable(["held"], "recorder")
    assert [c.id for c in await db.jobs.claim("recorder", 30, 10, 0, ["held"])] == [first]

    monkeypatch.setattr("bot.db.queue.jobs.RESERVED_SECONDS", -1.0)  # a reservation already lapsed
    ((lapsed, _),) = await db.jobs.add([NewJob("held", "held:r3", {})], "a process that died")
    assert await db.jobs.claimable(["held"], "other")
    assert [c.id for c in await db.jobs.claim("other", 30, 10, 0, ["held"])] == [lapsed]
    assert behind not in {c.id for c in await db.jobs.claim("other", 30, 10, 0, ["held"])}  # q is busy


async def test_a_lapsed_job_its_holder_ends_meanwhile_is_not_taken_over(db: Database) -> None:
    """A claim reads the lapsed jobs, then takes them; on Postgres the holder could end one in
    between, and the claim set it running again: done twice. 200 ends raced by takeovers: each
    job is either ended by its holder or taken over, never both."""
    both = []
    for i in range(200):
        ((job_id, _),) = await db.jobs.add([NewJob("held", f"held:race{i}", {})])
        assert [c.id for c in await db.jobs.claim("holder", -1, 1, 0, ["held"])] == [job_id]  # lapsed
        await asyncio.sleep(random.random() / 500)
        ended, taken = await asyncio.gather(
            db.jobs.finish(job_id, "holder", "done"), db.jobs.claim("other", 30, 1, 0, ["held"])
        )
        if ended and [c.id for c in taken] == [job_id]:
            both.append(job_id)
        if not ended:  # taken over: end it so the next round's claim sees only its own job
            assert await db.jobs.finish(job_id, "other", "done")
    assert both == []


async def test_a_lapsed_job_renewed_meanwhile_keeps_its_queue_busy(db: Database) -> None:
    """A claim read the live running jobs (busy queues), then the runnable ones; on Postgres a
    lapsed job renewed by its holder in between was in neither, and the next job of its queue
    started beside it: two turns of one thread at once. 100 renewals raced by claims: the claim
    takes the lapsed job, or nothing of its queue, never the job behind it."""
    beside = []
    for i in range(100):
        kind = f"race{i}"  # a round's leftovers are not the next round's candidates
        ((first, _),) = await db.jobs.add([NewJob(kind, f"{kind}:1", {}, queue="thread")])
        assert [c.id for c in await db.jobs.claim("holder", -1, 1, 0, [kind])] == [first]  # lapsed
        ((second, _),) = await db.jobs.add([NewJob(kind, f"{kind}:2", {}, queue="thread")])
        await asyncio.sleep(random.random() / 500)
        renewed, taken = await asyncio.gather(
            db.jobs.renew("holder", 30, [first]), db.jobs.claim("other", 30, 2, 0, [kind])
        )
        if renewed and second in {c.id for c in taken}:
            beside.append(i)
        for job_id, owner in [(first, "holder" if renewed else "other"), *((c.id, "other") for c in taken)]:
            await db.jobs.finish(job_id, owner, "done")
    assert beside == []


async def test_a_claim_renews_the_leases_held_in_its_own_transaction(db: Database) -> None:
    """Renewing every held lease cost a transaction every lease/3 seconds: under load a claim
    comes by far more often, so the leases due ride in it; only this owner's running jobs."""
    ((mine, _), (theirs, _), (waiting, _)) = await db.jobs.add(
        [NewJob("k", "k:1", {}), NewJob("k", "k:2", {}), NewJob("k", "k:3", {})]
    )
    assert [c.id for c in await db.jobs.claim("me", 1, 1, 0, ["k"])] == [mine]
    assert [c.id for c in await db.jobs.claim("them", 1, 1, 0, ["k"])] == [theirs]
    claimed = await db.jobs.claim("me", 300, 1, 0, ["k"], renew=[mine, theirs])
    assert [c.id for c in claimed] == [waiting] and claimed.renewed == {mine}
    leases = {job_id: (await db.jobs.get(job_id)).lease_expires for job_id in (mine, theirs)}  # type: ignore[union-attr]
    assert leases[mine] > time.time() + 200 > time.time() + 2 > leases[theirs]


async def test_the_door_deletes_moved_inbox_rows_with_its_next_recording(tmp_path) -> None:
    """Moved rows were deleted in a transaction of their own every 200 moves or 30 s: the door's
    next recording deletes them in its own (once at least FORGET_BATCH wait)."""
    marks = Marks()
    inbox = Inbox(f"sqlite+aiosqlite:///{tmp_path}/x-inbox", marks)
    try:
        first = await inbox.add([NewJob("k", f"k:{i}", {}) for i in range(FORGET_BATCH)])
        marks.moved = max(row_id for row_id, _ in first)  # the engine moved them all
        commits: list[int] = []
        event.listen(inbox.engine.sync_engine, "commit", lambda _conn: commits.append(1))
        await inbox.add([NewJob("k", "k:late", {})])
        assert len(commits) == 1 and marks.deleted == marks.moved
        assert [job.key for _, job in await inbox.arrivals(0)] == ["k:late"]
    finally:
        await inbox.close()
