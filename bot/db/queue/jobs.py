"""The job table's queries: add many at once, claim under one lock, renew, finish, hand back.

Core statements on one connection each, not ORM sessions: these run for every delivery and
every answer, so each is one short transaction with as few round trips as the rule allows.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, literal_column, or_, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db.locks import serialized
from bot.db.models import Job, utcnow
from bot.db.patience import impatient
from tools.toolkit.errors import WorkInterrupted

if TYPE_CHECKING:
    from bot.db.database import Database

FINISHED = ("done", "failed", "interrupted")
CLAIM_LOCK = "work:claim"
CANDIDATES = 1000
RECORD_RETRY_SECONDS = 1.5  # pending jobs looked at per claim, oldest first
# A new job is reserved this long for the process that recorded it (its claimer was woken at
# once): other processes leave it alone, so two claims do not race for it and the loser's
# transaction is not spent for nothing. A recorder that dies or stalls meanwhile only delays it.
RESERVED_SECONDS = 2.0
T = Job.__table__  # type: ignore[attr-defined]
WAKE_CHANNEL = "switchboard_work"  # bot/work/wake.py listens on it
# Sent inside the transaction that records ("new") or finishes ("done") jobs: delivered at
# commit, never for a rollback (Postgres only; SQLite's processes poll).
# "new" (anyone may take it at once), or "new <owner>": reserved for the process that recorded it.
NOTIFY_NEW = text(f"SELECT pg_notify('{WAKE_CHANNEL}', :what)")
NOTIFY_DONE = text(f"SELECT pg_notify('{WAKE_CHANNEL}', 'done')")


@dataclass(frozen=True)
class NewJob:
    kind: str
    key: str
    payload: dict[str, Any]
    queue: str | None = None
    person: str | None = None
    created_at: datetime | None = None  # when it was recorded elsewhere first (the inbox)


def recorded(job: NewJob) -> dict[str, Any]:
    """The columns a new job and the front door's inbox row (bot/db/queue/inbox.py) share."""
    return {
        "kind": job.kind,
        "key": job.key,
        "queue": job.queue,
        "person": job.person,
        "payload": json.dumps(job.payload),
    }


@dataclass
class Claimed:
    """A job this process now holds: its fields as the handler needs them (the engine's Job is
    these and its lease's bookkeeping, so a field added here reaches the handlers)."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int  # which attempt this is (the row's `attempts`, this one counted)
    progress: dict[str, Any]
    created_at: datetime
    queue: str | None
    person: str | None


class Claims(list[Claimed]):
    """What a claim took, oldest first; `held_back` when it passed over a runnable job because
    its queue or its person's slots were busy (a finish anywhere may free them)."""

    def __init__(self) -> None:
        super().__init__()
        self.held_back = False
        self.renewed: set[int] = set()  # the leases it renewed (see `Jobs.claim`)


def choose(
    candidates: Sequence[Any], running: Sequence[Any], owner: str, now: float, slots: int, limit: int
) -> tuple[list[int], bool]:
    """Which candidates (id, queue, person, state, holder, until; oldest first) a claim takes, and
    whether it passed over a runnable one: one running job per queue, at most `slots` per person,
    none reserved for another recorder (later jobs of its queue wait for it)."""
    busy_queues = {queue for queue, _ in running if queue}
    per_person = Counter(person for _, person in running if person)
    chosen: list[int] = []
    held_back = False
    for job_id, queue, person, state, holder, until in candidates:
        if state == "pending" and holder and holder != owner and until >= now:
            if queue:
                busy_queues.add(queue)
            continue
        if queue:
            if queue in busy_queues:
                held_back = True
                continue
            busy_queues.add(queue)  # later jobs of this queue wait for this one
        if person and slots and per_person[person] >= slots:
            held_back = True
            continue
        per_person[person] += 1
        chosen.append(job_id)
        if len(chosen) >= limit:
            break
    return chosen, held_back


async def _held_and_runnable(
    conn: AsyncConnection, held: Any, runnable: Any, kinds: list[str]
) -> tuple[list[Any], list[Any]]:
    """The candidates (id, queue, person, state, holder, until; oldest first) and the (queue,
    person) of the jobs held now, in one statement, so one snapshot: on Postgres each statement
    sees the commits made before it, and a lapsed job renewed between two reads was in neither
    (its queue looked free: the next turn of its thread started beside it)."""
    columns = (T.c.id, T.c.queue, T.c.person, T.c.state, T.c.owner, T.c.lease_expires)
    candidates = select(*columns).where(runnable, T.c.kind.in_(kinds)).order_by(T.c.id).limit(CANDIDATES)
    first = candidates.subquery()
    rows = (
        await conn.execute(
            union_all(
                select(*columns, literal_column("1").label("busy")).where(held),
                select(first, literal_column("0")),
            )
        )
    ).all()
    running = [(r.queue, r.person) for r in rows if r.busy]
    return sorted((tuple(r[:6]) for r in rows if not r.busy), key=lambda r: r[0]), running


class NotOurs(WorkInterrupted):
    """The job's lease was taken over: its finish is rolled back."""


# One of a job's own writes, done in the transaction that finishes it; it may return the job's
# progress to keep (all of it, not a change).
Write = Callable[[AsyncConnection], Awaitable[Mapping[str, Any] | None]]


class Jobs:
    table = T

    def __init__(self, db: Database) -> None:
        self.db = db

    def _inserting(self, jobs: Iterable[NewJob], reserve_for: str | None = None) -> Any:
        """INSERT of new jobs; a key already there keeps its first job (ON CONFLICT DO NOTHING).
        `reserve_for`: the owner that has them to itself for RESERVED_SECONDS."""
        reserved = time.time() + RESERVED_SECONDS if reserve_for else 0.0
        rows = [
            {
                **recorded(j),
                "state": "pending",
                "attempts": 0,
                "owner": reserve_for,
                "lease_expires": reserved,
                "created_at": j.created_at or utcnow(),
            }
            for j in jobs
        ]
        return self.db.insert_statement(T).values(rows).on_conflict_do_nothing(index_elements=["key"])

    async def add(self, jobs: list[NewJob], reserve_for: str | None = None) -> list[tuple[int, bool]]:
        """Insert jobs in one transaction; a key already there keeps its first job: (id, False).
        `reserve_for` (the recording process's owner, when it has room to run them) has them to
        itself for a moment; other claims pass them over meanwhile."""

        async def work() -> list[tuple[int, bool]]:  # safe to redo: a key already there is kept
            async with self.db.engine.begin() as conn:
                made = await conn.execute(self._inserting(jobs, reserve_for).returning(T.c.id, T.c.key))
                ids = {key: job_id for job_id, key in made}
                new = set(ids)
                missing = [j.key for j in jobs if j.key not in ids]
                if missing:
                    found = await conn.execute(select(T.c.id, T.c.key).where(T.c.key.in_(missing)))
                    ids.update({key: job_id for job_id, key in found})
                if new and self.db.dialect == "postgresql":
                    await conn.execute(NOTIFY_NEW, {"what": f"new {reserve_for}" if reserve_for else "new"})
            return [(ids[j.key], j.key in new) for j in jobs]

        # On the ack path: a short wait rides out a blip, a restart is told (Slack's limit is 3 s);
        # the pool's own patience (15 s for a connection) would outlast the ack.
        with impatient():
            return await self.db.retrying(work, what="recording work", seconds=RECORD_RETRY_SECONDS)

    async def claim(
        self,
        owner: str,
        ttl: float,
        limit: int,
        slots: int,
        kinds: Iterable[str],
        quiet_for: float = 0.0,
        arrivals: Sequence[NewJob] = (),
        renew: Sequence[int] = (),
    ) -> Claims:
        """Take up to `limit` runnable jobs: pending ones, and running ones whose lease lapsed
        (their owner died), oldest first, at most one running per queue, at most `slots` running
        per person (0: no limit). One lock serializes claims across processes, so two claims
        never read the same "free" queue or slot.

        A lease that lapsed while the database was away may have a live holder that could not
        renew it: lapsed leases are taken over only when this process met no database fault in
        the last `quiet_for` seconds (the holders had that long to renew).

        `arrivals` (jobs the front door recorded in SQLite's inbox) are inserted first, in the
        same transaction: moving them costs no transaction of its own. So are the leases of
        `renew` (jobs this owner runs) extended; `renewed` says which are still ours.
        """
        wanted = list(kinds)

        async def attempt() -> Claims:
            take_over = time.monotonic() - self.db.faults.last >= quiet_for
            return await self._claim(owner, ttl, limit, slots, wanted, take_over, arrivals, renew)

        return await self.db.retrying(attempt, what="claiming work")

    async def _claim(
        self,
        owner: str,
        ttl: float,
        limit: int,
        slots: int,
        kinds: list[str],
        take_over: bool,
        arrivals: Sequence[NewJob],
        renew: Sequence[int],
    ) -> Claims:
        now = time.time()
        out = Claims()
        async with serialized(self.db, CLAIM_LOCK) as conn:
            if arrivals:
                await conn.execute(self._inserting(arrivals))
            if renew:
                out.renewed = {i for (i,) in await conn.execute(self._renewing(owner, ttl, renew))}
            lapsed = and_(T.c.state == "running", T.c.lease_expires < now)
            if take_over:
                held, runnable = (
                    and_(T.c.state == "running", T.c.lease_expires >= now),
                    or_(T.c.state == "pending", lapsed),
                )
            else:  # a lapsed job's holder may still be at work: its queue and its slot stay taken
                held, runnable = T.c.state == "running", T.c.state == "pending"
            chosen, held_back = choose(
                *await _held_and_runnable(conn, held, runnable, kinds), owner, now, slots, limit
            )
            out.held_back = held_back
            if not chosen:
                return out
            # `runnable` again: on Postgres the reads above do not stop a lapsed job's holder
            # from renewing or ending it meanwhile; the update re-checks each row as it is now.
            taken = await conn.execute(
                update(T)
                .where(T.c.id.in_(chosen), runnable)
                .values(state="running", owner=owner, lease_expires=now + ttl, attempts=T.c.attempts + 1)
                .returning(
                    T.c.id,
                    T.c.kind,
                    T.c.payload,
                    T.c.attempts,
                    T.c.progress,
                    T.c.created_at,
                    T.c.queue,
                    T.c.person,
                )
            )
            out.extend(
                Claimed(
                    id=r.id,
                    kind=r.kind,
                    payload=json.loads(r.payload),
                    attempt=r.attempts,
                    progress=json.loads(r.progress) if r.progress else {},
                    created_at=r.created_at,
                    queue=r.queue,
                    person=r.person,
                )
                for r in taken
            )
        out.sort(key=lambda c: c.id)
        return out

    @staticmethod
    def _renewing(owner: str, ttl: float, ids: Sequence[int]) -> Any:
        """Only the running ones: a job whose end could not be recorded lapses, and is redone."""
        return (
            update(T)
            .where(T.c.id.in_(ids), T.c.owner == owner, T.c.state == "running")
            .values(lease_expires=time.time() + ttl)
            .returning(T.c.id)
        )

    async def renew(self, owner: str, ttl: float, ids: Iterable[int]) -> set[int]:
        """Extend the leases of the jobs this owner runs, in one statement; returns the ids still
        ours. Only the running ones: a job whose end could not be recorded lapses, and is redone."""
        wanted = list(ids)

        async def work() -> set[int]:
            async with self.db.engine.begin() as conn:
                return {i for (i,) in await conn.execute(self._renewing(owner, ttl, wanted))}

        return await self.db.retrying(work, what="renewing leases")

    async def finish(self, job_id: int, owner: str, state: str, writes: Sequence[Write] = ()) -> bool:
        """Record the outcome, and the job's own `writes` (an answer's run, steps and messages) in
        the same transaction; False when the job is no longer ours (its lease was taken over):
        then nothing is written, so the attempt that holds it now is the only one recorded."""

        async def work(conn: AsyncConnection) -> bool:
            progress: dict[str, Any] = {}
            for write in writes:
                progress |= await write(conn) or {}
            ended: dict[str, Any] = {"state": state, "owner": None, "finished_at": utcnow()}
            if progress:
                ended["progress"] = json.dumps(progress)
            done = await conn.execute(
                update(T).where(T.c.id == job_id, T.c.owner == owner, T.c.state == "running").values(ended)
            )
            if (done.rowcount or 0) != 1:
                raise NotOurs  # rolls the writes back
            if self.db.dialect == "postgresql":  # for a wait() in another process
                await conn.execute(NOTIFY_DONE)
            return True

        async def landed(conn: AsyncConnection) -> bool | None:
            """A commit lost with its connection landed if the job is finished now."""
            found = (await conn.execute(select(T.c.state).where(T.c.id == job_id))).scalar()
            return True if found in FINISHED else None

        try:
            return await self.db.transaction(work, landed=landed, what="finishing work")
        except NotOurs:
            return False

    async def claimable(self, kinds: Iterable[str], owner: str | None = None) -> bool:
        """Whether any job of `kinds` is pending (and, for `owner`, not reserved for another
        process) or has a lapsed lease: one read, no transaction, so a claim round that would
        find nothing costs no write lock or advisory lock."""
        now = time.time()
        pending = T.c.state == "pending"
        if owner is not None:
            pending = and_(pending, or_(T.c.owner.is_(None), T.c.owner == owner, T.c.lease_expires < now))
        runnable = or_(pending, and_(T.c.state == "running", T.c.lease_expires < now))
        async with self.db.reading() as conn:
            found = await conn.execute(select(T.c.id).where(runnable, T.c.kind.in_(list(kinds))).limit(1))
            return found.first() is not None

    async def note(self, job_id: int, owner: str, progress: Mapping[str, Any]) -> bool:
        """Keep what this attempt showed (a stream's ts), so a redo can adopt it."""
        async with self.db.engine.begin() as conn:
            done = await conn.execute(
                update(T)
                .where(T.c.id == job_id, T.c.owner == owner)
                .values(progress=json.dumps(dict(progress)))
            )
            return (done.rowcount or 0) == 1

    async def run_of(self, job_id: int) -> int | None:
        """The run a finished job noted (an answer's buttons name its job: its run is written
        only when the job ends)."""
        async with self.db.reading() as conn:
            found = (await conn.execute(select(T.c.progress).where(T.c.id == job_id))).scalar()
        run = json.loads(found).get("run") if found else None
        return run if isinstance(run, int) else None

    async def release(self, owner: str, ids: Iterable[int]) -> int:
        """Hand jobs back (a graceful stop): pending again, at once claimable by another process,
        and so is new work reserved for this owner (else others would wait out the reservation).
        Redone on a transient fault, so a stop during a restart still hands them over."""
        wanted = list(ids)

        async def work() -> int:  # safe to redo: a job already handed back is no longer ours
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(T)
                    .where(T.c.owner == owner, T.c.state == "pending")
                    .values(owner=None, lease_expires=0.0)
                )
                if not wanted:
                    return 0
                done = await conn.execute(
                    update(T)
                    .where(T.c.id.in_(wanted), T.c.owner == owner, T.c.state == "running")
                    .values(state="pending", owner=None, lease_expires=0.0)
                )
                return done.rowcount or 0

        return await self.db.retrying(work, what="handing work back")

    async def states(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = list(ids)
        if not wanted:
            return {}
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(T.c.id, T.c.state).where(T.c.id.in_(wanted)))
            return {i: s for i, s in rows}

    async def get(self, job_id: int) -> Job | None:
        async with self.db.session() as s:
            return await s.get(Job, job_id)

    async def give_up_stale(self, kind: str, max_age: timedelta) -> int:
        """Jobs of `kind` never started and older than `max_age` are interrupted unanswered (by the
        time a process is back, the question is stale); started ones are left to the handler's
        give-up, which can replace what they showed. Looked for first: usually there are none,
        and then nothing is written."""
        stale = and_(
            T.c.kind == kind,
            T.c.state == "pending",
            T.c.attempts == 0,
            T.c.created_at < utcnow() - max_age,
        )
        async with self.db.reading() as conn:
            if (await conn.execute(select(T.c.id).where(stale).limit(1))).first() is None:
                return 0
        async with self.db.engine.begin() as conn:
            done = await conn.execute(
                update(T).where(stale).values(state="interrupted", finished_at=utcnow())
            )
            return done.rowcount or 0
