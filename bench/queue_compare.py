"""Our job table (bot/db/queue/jobs.py + WorkEngine) against pgqueuer and procrastinate on one real
PostgreSQL: enqueue rate, enqueue→start latency across processes, jobs/s with two consumer
processes, and transactions / statements per job (issue 22: prefer a library where one fits).

    .venv/bin/pip install pgqueuer procrastinate   # into the venv only: not project dependencies
    .venv/bin/python bench/queue_compare.py [--jobs 2000] [--latency-jobs 100] [--only ours,pgqueuer]

Every system runs on its own fresh database of one throwaway server (tests/postgres.py,
fsync off) with pg_stat_statements loaded. "ours-poll" is the engine before bot/work/wake.py
(other processes see new work at their 0.5 s poll), "ours" with it (LISTEN/NOTIFY). Consumers
are separate processes (this file with --consume): the latency phase has one idle consumer, so
the wake path is what is measured; the throughput phase has two, each running at most 20 jobs
of 1 ms at once. Each job writes "start end" times to the consumer's file; nothing else is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


SYSTEMS = ("ours-poll", "ours", "pgqueuer", "procrastinate")
# Consumers through PgBouncer's transaction pool (producers stay direct): ours without a direct
# URL polls; "+listen" LISTENs on DATABASE_LISTEN_URL; the libraries LISTEN through the pool.
BOUNCED = ("ours@bouncer", "ours+listen@bouncer", "pgqueuer@bouncer", "procrastinate@bouncer")
CONCURRENCY = 20  # jobs one consumer process runs at once
PERSONS = 20  # ours: jobs spread over this many people (3 slots each: never the limit here)


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# -- consumers (run in their own process) -------------------------------------------------------


class Recorder:
    """Appends "enqueued started ended" per job to a file the parent reads."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1)  # open for the process's life

    async def run(self, enqueued: float, ms: float) -> None:
        started = time.time()
        await asyncio.sleep(ms / 1000)
        self.file.write(f"{enqueued} {started} {time.time()}\n")


async def consume(system: str, url: str, out: str, direct: str) -> None:
    try:
        await serve(system, url, out, direct)
    finally:
        cpu_mark(out + ".cpu")


def cpu_mark(path: str) -> None:
    """This process's CPU seconds so far, for the parent (ready, then at exit)."""
    Path(path).write_text(str(time.process_time()))


def ready(out: str) -> None:
    cpu_mark(out + ".ready")


async def serve(system: str, url: str, out: str, direct: str) -> None:
    """Run `system`'s worker until SIGTERM; `url` may go through PgBouncer, `direct` does not."""
    rec = Recorder(out)
    bounced = system.endswith("@bouncer")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if system.startswith("ours"):
        from bot.db import Database
        from bot.settings import Settings
        from bot.work import WorkEngine
        from bot.work.wake import Waker

        db = Database(url, pool_size=CONCURRENCY, max_overflow=0, pgbouncer=bounced)
        listen = direct if "+listen" in system else None if bounced else url
        waker = Waker(listen) if listen and system != "ours-poll" else None
        engine = WorkEngine(db, concurrency=CONCURRENCY, waker=waker)
        engine.kind("bench", lambda job: rec.run(job.payload["t"], job.payload["ms"]))
        await engine.start()
        ready(out)
        await stop.wait()
        await engine.stop(Settings.model_fields["shutdown_drain_seconds"].default)
        await db.close()
    elif system.startswith("pgqueuer"):
        import asyncpg  # type: ignore[import-untyped]
        from pgqueuer import AsyncpgDriver, Queries, QueueManager

        # Through a transaction pool no statement may stay prepared (PgBouncer 1.18 keeps none).
        conn = await asyncpg.connect(plain(url), **({"statement_cache_size": 0} if bounced else {}))
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("bench")
        async def bench(job: Any) -> None:
            data = json.loads(job.payload)
            await rec.run(data["t"], data["ms"])

        loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
        ready(out)
        await qm.run(batch_size=10, max_concurrent_tasks=CONCURRENCY)
        await conn.close()
    elif system.startswith("procrastinate"):
        import procrastinate

        extra = {"kwargs": {"prepare_threshold": None}} if bounced else {}
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=plain(url), **extra))

        @app.task(name="bench")
        async def bench_task(t: float, ms: float) -> None:
            await rec.run(t, ms)

        async with app.open_async():
            ready(out)
            await app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=True)


# -- producers (this process) -------------------------------------------------------------------


class Producer:
    """Install the system's schema, enqueue one job or a batch."""

    def __init__(self, system: str, url: str) -> None:
        self.system, self.url = system.split("@")[0].split("+")[0], url
        self.n = 0

    async def open(self) -> None:
        if self.system.startswith("ours"):
            from bot.db import Database
            from bot.work import WorkEngine

            self.db = Database(self.url)
            await self.db.create_schema()
            self.engine = WorkEngine(self.db)  # submit() without start(): records only
        elif self.system == "pgqueuer":
            import asyncpg
            from pgqueuer import AsyncpgDriver, Queries

            self.conn = await asyncpg.connect(plain(self.url))
            self.queries = Queries(AsyncpgDriver(self.conn))
            await self.queries.install()
        else:
            import procrastinate

            self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=plain(self.url)))
            await self.app.open_async()
            await self.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        if self.system.startswith("ours"):
            await self.db.close()
        elif self.system == "pgqueuer":
            await self.conn.close()
        else:
            await self.app.close_async()

    async def enqueue(self, count: int, ms: float) -> None:
        """`count` jobs in one call (1: the single path), each with our semantics' fields where
        the system has them: a dedupe key, a conversation (serial order), a person."""
        first, self.n = self.n, self.n + count
        now = time.time()
        jobs = [(f"k{i}", f"c{i}", f"u{i % PERSONS}", {"t": now, "ms": ms}) for i in range(first, self.n)]
        if self.system.startswith("ours"):
            from bot.db.queue.jobs import NewJob

            if count == 1:
                key, queue, person, payload = jobs[0]
                await self.engine.submit("bench", key, payload, queue=queue, person=person)
            else:
                await self.db.jobs.add([NewJob("bench", k, p, q, u) for k, q, u, p in jobs])
        elif self.system == "pgqueuer":
            await self.queries.enqueue(
                ["bench"] * count,
                [json.dumps(p).encode() for *_, p in jobs],
                [0] * count,
                dedupe_key=[k for k, *_ in jobs],
            )
        else:
            from procrastinate import jobs as pjobs

            made = [
                pjobs.Job(queue="default", lock=q, queueing_lock=k, task_name="bench", task_kwargs=p)
                for k, q, _, p in jobs
            ]
            if count == 1:
                await self.app.job_manager.defer_job_async(made[0])
            else:
                await self.app.job_manager.batch_defer_jobs_async(made)


# -- measuring ----------------------------------------------------------------------------------


async def counters(admin: Any, db: str) -> tuple[int, int]:
    """(committed transactions of `db`, statements run in it) so far."""
    xacts = await admin.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", db)
    calls = await admin.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = $1 AND s.query NOT ILIKE '%pg_stat%'",
        db,
    )
    return int(xacts), int(calls)


async def settled_counters(admin: Any, db: str) -> tuple[int, int]:
    # An idle backend flushes its statistics within 10 s (PGSTAT_IDLE_INTERVAL); exited ones at once.
    await asyncio.sleep(11)
    return await counters(admin, db)


class Consumers:
    """Consumer processes of one system; their job records."""

    def __init__(self, system: str, url: str, count: int, tmp: str, direct: str) -> None:
        self.system, self.url, self.tmp, self.direct = system, url, tmp, direct
        self.files = [f"{tmp}/{system}-{i}-{time.monotonic_ns()}.txt" for i in range(count)]
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Consumers:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        for out in self.files:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--consume", self.system, self.url, out, self.direct, env=env
                )
            )
        async with asyncio.timeout(60):
            while not self.ready():
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # listeners connected, first claim rounds done: idle now
        return self

    def ready(self) -> bool:
        return all(os.path.exists(f + ".ready") for f in self.files)

    def records(self) -> list[tuple[float, float, float]]:
        out = []
        for f in self.files:
            if Path(f).exists():
                out += [tuple(map(float, line.split())) for line in Path(f).read_text().splitlines()]
        return out  # type: ignore[return-value]

    async def wait_for(self, count: int, since: float = 0.0, timeout: float = 300) -> None:
        """Until `count` jobs enqueued at or after `since` have run."""
        async with asyncio.timeout(timeout):
            while sum(r[0] >= since for r in self.records()) < count:
                await asyncio.sleep(0.02)

    def cpu(self) -> float:
        """CPU seconds the consumers spent between being ready and exiting."""
        spent = (
            float(Path(f + ".cpu").read_text()) - float(Path(f + ".ready").read_text()) for f in self.files
        )
        return sum(spent)

    async def __aexit__(self, *_: object) -> None:
        for p in self.procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 60)  # ours drains for DRAIN_SECONDS
            except TimeoutError:
                p.kill()
                await p.wait()


async def timed(n: int, step: Callable[[], Awaitable[None]]) -> float:
    began = time.perf_counter()
    for _ in range(n):
        await step()
    return time.perf_counter() - began


async def measure(
    system: str, server_url: str, args: argparse.Namespace, tmp: str, bouncer: int | None
) -> dict[str, Any]:
    import asyncpg
    from sqlalchemy.engine import make_url

    from tests.postgres import fresh_database

    url = await fresh_database(server_url)
    dbname = url.rsplit("/", 1)[1]
    via = make_url(url).set(port=bouncer).render_as_string(hide_password=False) if bouncer else url
    admin = await asyncpg.connect(plain(server_url))
    producer = Producer(system, url)
    await producer.open()
    row: dict[str, Any] = {"system": system}
    try:
        # enqueue rates (no consumer running)
        x0, s0 = await settled_counters(admin, dbname)
        single = await timed(args.single_jobs, lambda: producer.enqueue(1, 1))
        x1, s1 = await settled_counters(admin, dbname)
        batches = args.jobs // 100
        batched = await timed(batches, lambda: producer.enqueue(100, 1))
        row["enqueue_single"] = args.single_jobs / single
        row["enqueue_batch100"] = batches * 100 / batched
        row["enqueue_xact"] = (x1 - x0) / args.single_jobs
        row["enqueue_stmts"] = (s1 - s0) / args.single_jobs
        backlog = args.single_jobs + batches * 100

        # throughput: two consumers drain the backlog of 1 ms jobs
        x2, s2 = await settled_counters(admin, dbname)
        async with Consumers(system, via, 2, tmp, url) as two:
            await two.wait_for(backlog)
            recs = two.records()
        x3, s3 = await settled_counters(admin, dbname)
        span = max(r[2] for r in recs) - min(r[1] for r in recs)
        row["jobs_per_s"] = backlog / span
        row["consume_xact"] = (x3 - x2) / backlog
        row["consume_stmts"] = (s3 - s2) / backlog
        row["cpu_ms_per_job"] = 1000 * two.cpu() / backlog
        row["dupes"] = len(recs) - backlog

        # latency: one idle consumer in another process, jobs enqueued one by one, spaced out
        async with Consumers(system, via, 1, tmp, url) as one:
            began = time.time()
            i0, _ = await counters(admin, dbname)
            await asyncio.sleep(args.idle)
            i1, _ = await counters(admin, dbname)
            row["idle_xact_per_s"] = (i1 - i0) / args.idle  # polls, health checks, heartbeats
            for _ in range(args.latency_jobs):
                await producer.enqueue(1, 1)
                await asyncio.sleep(args.gap)
            await one.wait_for(args.latency_jobs, began, timeout=60 + args.latency_jobs * 10)
            recs = one.records()
            lat = sorted(1000 * (r[1] - r[0]) for r in recs if r[0] >= began)
            row["dupes"] += len(recs) - len(lat)  # backlog jobs handed over and redone
        row["lat_p50_ms"] = statistics.median(lat)
        row["lat_p99_ms"] = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    finally:
        await producer.close()
        await admin.close()
    return row


COLUMNS = [
    ("system", "system", "{}"),
    ("enqueue_single", "enqueue 1/call (jobs/s)", "{:.0f}"),
    ("enqueue_batch100", "enqueue 100/call (jobs/s)", "{:.0f}"),
    ("enqueue_xact", "xact/enqueue", "{:.2f}"),
    ("enqueue_stmts", "stmts/enqueue", "{:.2f}"),
    ("lat_p50_ms", "enqueue→start p50 (ms)", "{:.1f}"),
    ("lat_p99_ms", "p99 (ms)", "{:.1f}"),
    ("jobs_per_s", "2 consumers, 1 ms jobs (jobs/s)", "{:.0f}"),
    ("consume_xact", "xact/job consumed", "{:.2f}"),
    ("consume_stmts", "stmts/job consumed", "{:.2f}"),
    ("cpu_ms_per_job", "consumer CPU ms/job", "{:.2f}"),
    ("idle_xact_per_s", "xact/s of an idle consumer", "{:.1f}"),
    ("dupes", "jobs run twice", "{}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    from tests.postgres import PostgresServer

    server = PostgresServer(shared_preload_libraries="pg_stat_statements", max_connections=200)
    server.start()
    tmp = tempfile.mkdtemp(prefix="queue-compare-")
    try:
        import asyncpg

        admin = await asyncpg.connect(plain(server.url))
        await admin.execute("CREATE EXTENSION pg_stat_statements")
        version = await admin.fetchval("SHOW server_version")
        await admin.close()
        rows = []
        async with contextlib.AsyncExitStack() as stack:
            for system in args.only.split(","):
                port = None
                if system.endswith("@bouncer"):
                    from tests.postgres import pgbouncer

                    port = await stack.enter_async_context(pgbouncer(server.url))
                print(f"measuring {system} ...", file=sys.stderr, flush=True)
                rows.append(await measure(system, server.url, args, tmp, port))
        versions = {}
        for name in ("pgqueuer", "procrastinate", "asyncpg", "psycopg"):
            from importlib.metadata import PackageNotFoundError
            from importlib.metadata import version as pkg_version

            try:
                versions[name] = pkg_version(name)
            except PackageNotFoundError:
                versions[name] = "-"
        print(f"PostgreSQL {version}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; " + " ".join(sys.argv))
        print(table(rows))
    finally:
        server.remove()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--consume":
        asyncio.run(consume(*sys.argv[2:6]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs enqueued in batches of 100")
    parser.add_argument("--single-jobs", type=int, default=300, help="jobs enqueued one per call")
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between latency jobs")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds an idle consumer is watched")
    parser.add_argument("--only", default=",".join(SYSTEMS + BOUNCED))
    asyncio.run(main(parser.parse_args()))
