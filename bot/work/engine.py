"""The one engine for durable work: turns, slash commands, digest fire times and approvals.

A job is recorded before Slack's ack (`submit`, group-committed by a `Recorder`: concurrent
deliveries share one transaction) and then run once by whichever process claims it:

- **Leases.** A claim sets owner + expiry; one statement per process renews every lease it holds
  (not one per job), so renewal stays cheap however many answers are in flight. A process that
  dies stops renewing; after the lease lapses any process's next claim takes the job over and the
  handler sees `job.redo` (and what the dead attempt noted in `job.progress`, e.g. the ts of its
  streamed answer), so it adopts or checks what was already shown instead of showing it twice.
- **Order and slots.** Jobs of one queue (a conversation) run one at a time in arrival order;
  jobs of one person hold at most `person_slots` running at once. Both are decided inside the
  claim, under one lock, so no waiting job polls for its turn.
- **Waking.** A submit, or a finish that frees what a claim held back (a busy queue or person,
  no room), wakes this process's claimer at once (an asyncio event);
  on Postgres other processes are woken by a NOTIFY (`bot/work/wake.py`), else they see new work
  at their next claim, at most `poll_seconds` later. A finishing process claims its queue's next
  job itself, so cross-process wakes matter for spreading load and for `wait` elsewhere.
- **Attempts.** A job started more than `max_attempts` times (its process died each time) is
  given up through the kind's `give_up`, which can replace what was shown with an apology.
- **Hand-over.** A graceful stop waits for running jobs, then hands the rest back (pending,
  lease cleared) so another process, or this one restarted, finishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.db.database import database_unavailable, transient
from bot.db.patience import impatient
from bot.db.queue.inbox import Inbox, Marks, inbox_url
from bot.db.queue.jobs import FINISHED, Claimed, NewJob, Write
from bot.work.recorder import Recorder
from tools.toolkit.errors import WorkInterrupted

if TYPE_CHECKING:
    from bot.db.database import Database
    from bot.work.wake import Waker

log = logging.getLogger(__name__)

# Starts of one job before it is given up with an apology: enough to ride out a run of crashes
# (bench/crash_recovery.py kills a process every few seconds; at 3, 7 of 40 turns were given
# up), few enough that a job that itself kills the process stops.
MAX_ATTEMPTS = 5
CLAIM_BATCH = 20
STALE_SWEEP_SECONDS = 30.0
FINISH_TRIES = 4
REDOS_HERE = 5  # runs of a job the database went away under, in the process that holds it


def process_owner() -> str:
    """A name for this process that no other process (here or on another host) shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobLost(WorkInterrupted):
    """The job's lease was taken over by another process: stop before doing its work twice."""


@dataclass
class Job(Claimed):
    """What a handler gets: the claimed job's fields (payload, which attempt this is, ...) and a
    way to note progress."""

    engine: WorkEngine = field(repr=False)
    lost: bool = False  # set when a renewal finds the lease taken over
    writes: list[Write] = field(default_factory=list, repr=False)
    afters: list[Callable[[], None]] = field(default_factory=list, repr=False)
    ended: bool = False  # its finish has begun: a write added now would not be in it
    held_at: float = 0.0  # time.monotonic() when the lease was last known to be ours
    again: bool = False  # the database went away under this attempt: redo the job, do not fail it

    @property
    def redo(self) -> bool:
        """A process died (or stopped) during an earlier attempt: something may be shown already."""
        return self.attempt > 1

    async def still_ours(self) -> None:
        """Raise JobLost when another process took this job over (call before showing anything)."""
        if not await self.engine.holds(self):
            raise JobLost

    async def note(self, **progress: Any) -> None:
        """Record what this attempt has shown, durably, before relying on it."""
        self.progress = {**self.progress, **progress}
        if not await self.engine.db.jobs.note(self.id, self.engine.owner, self.progress):
            self.lost = True

    def at_end(self, write: Write, after: Callable[[], None] | None = None) -> bool:
        """Do `write` in the transaction that finishes this job (an answer's run, steps and
        messages: one transaction, not one each), then call `after` once it committed. False
        when the finish has begun: the caller writes it itself."""
        if self.ended:
            return False
        self.writes.append(write)
        if after is not None:
            self.afters.append(after)
        return True


Handler = Callable[[Job], Awaitable[None]]

# The job the current task runs (None outside jobs): a recorded delivery's listener answers its
# message inside that delivery's own job instead of recording a second one.
current_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("current_job", default=None)


@dataclass(frozen=True)
class Kind:
    run: Handler
    give_up: Handler | None = None  # a job out of attempts, or stale after being started
    max_age: timedelta = timedelta(minutes=15)  # older than this, the job is not started any more


class WorkEngine:
    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 30.0,
        concurrency: int = 100,
        person_slots: int = 3,
        poll_seconds: float = 0.5,
        max_attempts: int = MAX_ATTEMPTS,
        waker: Waker | None = None,
    ) -> None:
        self.db = db
        self.waker = waker  # other processes' NOTIFYs wake the claimer (`_notified`)
        self.owner = process_owner()
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.person_slots = person_slots
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.kinds: dict[str, Kind] = {}
        self._running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._waiters: dict[int, list[asyncio.Future[str]]] = {}
        self.recorder = Recorder(self.record, self.wake)
        self.submit = self.recorder.submit  # recording on this loop: see `Recorder.submit`
        url = inbox_url(db.url)
        self.marks = Marks()  # inbox rows: the last this process moved, and deleted (the door too)
        self.inbox = Inbox(url, self.marks) if url else None  # SQLite: the door's deliveries wait there
        self._renewed_at = 0.0  # when every lease held here was last renewed (alone, or in a claim)
        self.recorders: list[Recorder] = [self.recorder]  # the front door adds its own
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop = asyncio.Event()
        self._last_stale_sweep = 0.0
        # The last claim passed over runnable work (its queue or person busy): a finish, here or
        # elsewhere, may free it. Else a finish needs no claim round (the claimer is woken by
        # new work, a free room, a `wait`, and polls).
        self._held_back = False
        self._finished = 0  # finishes so far: one during a claim round may have freed what it held back

    def kind(
        self,
        name: str,
        run: Handler,
        *,
        give_up: Handler | None = None,
        max_age: timedelta = timedelta(minutes=15),
    ) -> None:
        """Register how jobs of `name` run; a process claims only kinds it knows."""
        self.kinds[name] = Kind(run, give_up, max_age)

    # -- recording ---------------------------------------------------------------------------

    def reserving(self, jobs: list[NewJob]) -> str | None:
        """Whom new `jobs` recorded here are reserved for: this process while it claims, has
        room and runs their kinds (its claimer is woken at once), else nobody (any process
        takes them). Read from the front door's thread too."""
        running = self._loop is not None and not self._stopping
        if running and len(self._running) < self.concurrency and all(j.kind in self.kinds for j in jobs):
            return self.owner
        return None

    async def record(self, jobs: list[NewJob]) -> list[tuple[int, bool]]:
        """The job table's `add`, reserved for this process when it takes them (`reserving`)."""
        return await self.db.jobs.add(jobs, self.reserving(jobs))

    def wake(self) -> None:
        """New work or a free slot: the claimer looks now (call on the engine's loop)."""
        self._wake.set()

    def wake_threadsafe(self) -> None:
        """`wake`, from another thread (the front door's)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait(self, job_id: int) -> str:
        """Until the job is finished (here or in another process); returns its final state."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        self._wake.set()  # the claimer's next round also looks at waited-for jobs
        return await future

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming and renewing; call once the kinds are registered."""
        self._stopping = False
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._claim_forever(), name="work: claim"),
            asyncio.create_task(self._renew_forever(), name="work: renew"),
        ]
        if self.waker is not None:
            await self.waker.start(self._notified)

    def _notified(self, what: str) -> None:
        """A process recorded work ("new", or "new <owner>" when reserved for the recorder), or
        finished a job ("done"). Reserved work is the recorder's (its claimer was woken at once):
        looking would only race it, and should it not take the work, the poll here sees the
        reservation lapse. A finishing process claims its queue's next job itself, so a finish
        elsewhere matters here only to a `wait` or to work a claim held back."""
        if what == "done" and not self._waiters and not self._held_back:
            return
        if what.startswith("new "):
            return
        self._wake.set()

    async def stop(self, drain: float) -> int:
        """Stop claiming, let running jobs finish for `drain` seconds, hand the rest back.

        Returns how many were handed back.
        """
        self._stopping = True
        self._wake.set()
        if self.waker is not None:
            await self.waker.stop()
        # The claimer finishes its round and leaves: cancelling it mid-claim could leave SQLite's
        # write lock taken by a BEGIN IMMEDIATE whose await was cut off. Leases are renewed
        # through the drain: one lapsing then would have another process redo a running answer.
        await self._end(self._tasks[:1])
        running = [task for _, task in self._running.values()]
        if running:
            _, still = await asyncio.wait(running, timeout=drain)
        else:
            still = set()
        left = [job.id for job, task in list(self._running.values()) if task in still]
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
        self._stop.set()
        await self._end(self._tasks[1:])
        self._tasks = []
        try:
            await self.db.jobs.release(self.owner, left)  # and the new work reserved for us
            if left:
                log.info("handed %d unfinished job(s) over to the next process", len(left))
        except Exception:  # the database is away: the leases and reservations lapse instead
            log.warning("could not hand %d job(s) over; their leases lapse instead", len(left))
        return len(left)

    async def close(self) -> None:
        if self.inbox is not None:
            if self.marks.moved > self.marks.deleted:  # else the door's next recording would
                with contextlib.suppress(Exception):
                    await self.inbox.forget(self.marks.moved)
            await self.inbox.close()

    @staticmethod
    async def _end(tasks: list[asyncio.Task[None]]) -> None:
        """Let the loops see the stop and leave; cancel one that takes longer than 10 s."""
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=10)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)

    @property
    def busy(self) -> int:
        return len(self._running)

    async def settled(self) -> bool:
        """Nothing runs here, nothing is being recorded, and no job this process could claim
        waits (tests and the health page ask)."""
        if self._running or any(r.busy for r in self.recorders):
            return False
        if self.inbox is not None:
            with contextlib.suppress(Exception):
                if await self.inbox.arrivals(self.marks.moved):
                    return False
        try:
            with impatient():  # a question about now: a down database answers at once
                return not await self.db.jobs.claimable(self.kinds, self.owner)
        except Exception:  # the database is down: nothing can be claimed, so nothing more will run
            return True

    async def _claim_forever(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                more = await self.claim_once()
                await self._answer_waiters()
                await self._sweep_stale()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("claiming work failed (%s); trying again", type(exc).__name__)
                more = False
            if more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def claim_once(self) -> bool:
        """Claim what this process has room for and start it; True when there may be more."""
        room = self.concurrency - len(self._running)
        if room <= 0 or self._stopping or not self.kinds:
            return False
        limit = min(room, CLAIM_BATCH)
        finished = self._finished
        arrivals = await self.inbox.arrivals(self.marks.moved) if self.inbox is not None else []
        # A round that finds nothing writes nothing.
        if not arrivals and not await self.db.jobs.claimable(self.kinds, self.owner):
            self._held_back = False
            return False
        began = time.monotonic()
        # Leases due for renewal ride in the claim's transaction: under load claims come often
        # enough that the renewal loop finds nothing to do, and renewing costs no transaction.
        held = [job for job, _ in self._running.values()]
        renew = held if began - self._renewed_at >= self.lease_seconds / 6 else []
        claimed = await self.db.jobs.claim(
            self.owner,
            self.lease_seconds,
            limit,
            self.person_slots,
            list(self.kinds),
            quiet_for=2 * self.lease_seconds,  # a lease lapsed in an outage: its holder renews first
            arrivals=[j for _, j in arrivals],
            renew=[j.id for j in renew],
        )
        if renew or not held:
            self._note_renewed(renew, claimed.renewed, began)
            self._renewed_at = began
        if arrivals:
            self.marks.moved = arrivals[-1][0]  # the door deletes them with a later recording
        for row in claimed:
            self._start(row, began)
        self._held_back = claimed.held_back
        return len(claimed) == limit or (claimed.held_back and self._finished != finished)

    def _start(self, row: Claimed, held_at: float = 0.0) -> None:
        job = Job(**vars(row), engine=self, held_at=held_at)
        task = asyncio.create_task(self._run(job), name=f"{row.kind} job {row.id}")
        self._running[row.id] = (job, task)

    async def _run(self, job: Job) -> None:
        kind = self.kinds[job.kind]
        state = "done"
        current_job.set(job)  # this task's own context: it ends with the task
        try:
            if job.attempt > self.max_attempts or self._stale(job, kind):
                log.warning("%s job %s: given up after %d attempt(s)", job.kind, job.id, job.attempt - 1)
                state = "interrupted"
                if kind.give_up is not None and job.redo:  # something may be shown: replace it
                    await kind.give_up(job)
            else:
                if job.redo:
                    log.warning("%s job %s: redoing it after its process stopped", job.kind, job.id)
                state = await self._run_through_faults(kind, job)
        except asyncio.CancelledError:
            if self._stopping:
                self._running.pop(job.id, None)
                raise  # `stop` hands it over
            state = "interrupted"
            raise
        except JobLost:
            log.warning("%s job %s: taken over by another process; stopped here", job.kind, job.id)
            state = ""
        except Exception:
            log.exception("%s job %s failed", job.kind, job.id)
            state = "failed"
        finally:
            if not (self._stopping and job.id not in self._running):
                await asyncio.shield(self._finish(job, state))

    async def _run_through_faults(self, kind: Kind, job: Job) -> str:
        """Run the job; when the database goes away under it (a restart, a dropped connection:
        not the job's fault) run it again here as a redo, which adopts what the first run
        showed, once the database answers and the lease is still ours. Its end state, or ""
        when it is left to its lease (another process holds it, or the database stays away)."""
        for _ in range(REDOS_HERE):
            try:
                await kind.run(job)
                if job.lost:
                    return ""  # stopped before showing anything twice; the new holder finishes it
                if not job.again:
                    return "done"
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
            job.again = False
            log.warning("%s job %s: the database went away under it; redoing it", job.kind, job.id)
            try:
                ours = await self.holds(job)
            except Exception:
                ours = False
            if not ours:
                log.warning("%s job %s: left to its lease", job.kind, job.id)
                return ""
            job.attempt += 1  # a redo, not an attempt its process died in
        return ""

    def _stale(self, job: Job, kind: Kind) -> bool:
        return datetime.now(UTC) - _aware(job.created_at) > kind.max_age

    async def _finish(self, job: Job, state: str) -> None:
        job.ended = True  # still running here until its end is written: `settled` waits for it
        if state:
            writes = job.writes
            for attempt in range(FINISH_TRIES):
                try:
                    if not await self.db.jobs.finish(job.id, self.owner, state, writes):
                        log.warning("%s job %s: finished, but another process holds it now", job.kind, job.id)
                    elif writes:
                        for after in job.afters:
                            after()
                    break
                except Exception as exc:
                    if writes and not transient(exc):  # its own writes failed: end the job without them
                        log.exception("%s job %s: its results could not be recorded", job.kind, job.id)
                        writes = []
                        continue
                    if attempt == FINISH_TRIES - 1:
                        log.error(
                            "%s job %s: could not record its end (%s)", job.kind, job.id, type(exc).__name__
                        )
                        break
                    await asyncio.sleep(0.5 * 2**attempt)
        full = len(self._running) >= self.concurrency
        self._running.pop(job.id, None)
        self._finished += 1
        for future in self._waiters.pop(job.id, []):
            if not future.done():
                future.set_result(state or "taken over")
        if full or self._held_back or self._waiters:
            self._wake.set()  # its queue, its person's slot or its room is what waiting work needs

    async def _answer_waiters(self) -> None:
        """Jobs waited for that another process runs: one query for all of them."""
        elsewhere = [i for i in self._waiters if i not in self._running]
        if not elsewhere:
            return
        for job_id, state in (await self.db.jobs.states(elsewhere)).items():
            if state in FINISHED:
                for future in self._waiters.pop(job_id, []):
                    if not future.done():
                        future.set_result(state)

    async def _sweep_stale(self) -> None:
        if time.monotonic() - self._last_stale_sweep < STALE_SWEEP_SECONDS:
            return
        self._last_stale_sweep = time.monotonic()
        for name, kind in self.kinds.items():
            if given_up := await self.db.jobs.give_up_stale(name, kind.max_age):
                log.info("%d %s job(s) were too old to start any more", given_up, name)

    async def _renew_forever(self) -> None:
        while not self._stop.is_set():  # set after a stop's drain
            due = self._renewed_at + self.lease_seconds / 3 - time.monotonic()
            with contextlib.suppress(TimeoutError):  # the end of the drain ends the wait at once
                await asyncio.wait_for(self._stop.wait(), max(due, self.lease_seconds / 30))
            began = time.monotonic()
            if self._stop.is_set() or began - self._renewed_at < self.lease_seconds / 3:
                continue  # a claim renewed them meanwhile
            self._renewed_at = began
            if not self._running:
                continue
            jobs = [job for job, _ in self._running.values()]
            try:
                ours = await self.db.jobs.renew(self.owner, self.lease_seconds, [j.id for j in jobs])
            except Exception as exc:  # retried next round; a lease only lapses after its ttl
                log.warning("could not renew leases (%s)", type(exc).__name__)
                continue
            self._note_renewed(jobs, ours, began)

    def _note_renewed(self, jobs: list[Job], ours: set[int], began: float) -> None:
        for job in jobs:
            if job.id in ours:
                job.held_at = began
            elif not job.lost and not job.ended:
                log.warning("%s job %s: its lease was taken over", job.kind, job.id)
                job.lost = True

    async def holds(self, job: Job) -> bool:
        """Whether this process still holds the job's lease, before it shows something: known
        while the last renewal is recent, else asked (and renewed). A process paused past its
        lease (load, an outage) must not show what another process is redoing."""
        if job.lost:
            return False
        if time.monotonic() - job.held_at < self.lease_seconds / 2:
            return True
        began = time.monotonic()
        self._note_renewed([job], await self.db.jobs.renew(self.owner, self.lease_seconds, [job.id]), began)
        return not job.lost


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
