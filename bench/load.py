"""Load: sustained mention rates and a burst against real bot processes, beside the ack floor.

Run by hand:  .venv/bin/python bench/load.py [--rates 5,10,20,50] [--duration 10] [--burst 60]
              [--database-url postgresql://...] [--processes 1|2] [--json out.json]
(--database-url names a PostgreSQL server: a fresh database is made on it; default: SQLite.)

Processes, as in production: the bot (`python -m bot serve`, HTTP mode; with --processes 2 behind
crash_recovery.py's round-robin forwarder), the fake Slack and streaming model
(bench/fakes_process.py: --ttft to the first token, then --tokens deltas --token-interval apart),
the floor (bench/signature_floor.py: checks Slack's v0 signature, answers 200, nothing else),
and this load generator. Each delivery, a signed app_mention from one of --users people in a
thread of its own, goes to the floor and to the bot at the same moment, so both acks are read
under the same load on the same machine.

Per phase: ack p50/p99 of bot and floor and their ratio, acks over 3 s, answers on time (the
final answer in the fake Slack within --allowance seconds of its delivery), CPU seconds per
answer (utime+stime of the bot processes from /proc, from the phase's first delivery until its
last answer and the database counters' settling), peak RSS, TCP connections the fake Slack
accepted, database transactions and statements per answer (the bots' /metrics). A warm-up of a
few mentions runs first, unreported. p99 is the nearest-rank value (of 60 acks, the 2nd largest).
Goals: at 20/s ack p99 within 3x the floor's p99 or at most 50 ms above it; for the burst
within 3x or 100 ms above; the highest sustained rate with every answer on time and p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ack_latency import percentile
from bench.crash_recovery import Fleet
from bench.load_report import SLOW_ACK_MS, ack_summary, goals, rounded, show
from bench.proc_stats import cpu_seconds, rss_mb, sample_rss
from tests.bot_process import bot_env
from tests.conftest import SIGNING_SECRET
from tests.fakes.slack_requests import event_body, mention, post_signed
from tests.postgres import fresh_database

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 3
GRACE = 30.0  # after the last delivery's allowance: how long late answers are waited for


@dataclass
class Phase:
    name: str
    count: int
    interval: float  # seconds between deliveries (0: a burst)
    rate: float | None = None


@dataclass
class Rig:
    """What every phase drives and reads: the processes, their URLs, the HTTP client."""

    fleet: Fleet
    floor: str
    urls: dict[str, str]
    http: aiohttp.ClientSession
    users: int
    allowance: float
    next_question: int = 0


async def child(script: str, *args: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """A helper process that prints its URLs as one JSON line and stops when its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    return proc, json.loads(await proc.stdout.readline())


async def close_child(proc: Any) -> None:
    proc.stdin.close()
    await asyncio.wait_for(proc.wait(), 30)


async def db_counts(rig: Rig) -> dict[str, float]:
    """The database counters (bot/db/counting.py) summed over the bot processes."""
    out: dict[str, float] = {}
    for proc in rig.fleet.procs:
        assert proc is not None
        async with rig.http.get(f"{proc.url}/metrics") as r:
            text = await r.text()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in ("switchboard_db_statements_total", "switchboard_db_transactions_total"):
                    key = s.labels.get("kind") or s.labels["event"]
                    out[key] = out.get(key, 0.0) + s.value
    return out


async def settled(rig: Rig, quiet: float = 0.5, limit: float = 15.0) -> dict[str, float]:
    """The database counters once they stop moving: a run's bookkeeping goes on for a moment
    after its answer appears, and belongs to this phase, not the next."""
    counts = await db_counts(rig)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        latest = await db_counts(rig)
        if latest == counts:
            break
        counts = latest
    return counts


async def fake_stats(rig: Rig) -> dict[str, Any]:
    async with rig.http.get(rig.urls["stats"]) as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def timed_ms(post: Any) -> float | None:
    """Milliseconds until the status came back; None for anything but a 200."""
    t0 = time.perf_counter()
    try:
        status = await post
    except (aiohttp.ClientError, TimeoutError):
        return None
    return (time.perf_counter() - t0) * 1000 if status == 200 else None


async def deliver(rig: Rig, body: bytes) -> tuple[float, float | None, float | None]:
    """The same delivery to the bot and to the floor at once: (sent at, bot ms, floor ms)."""
    proc = rig.fleet.pick()
    assert proc is not None
    sent = time.monotonic()
    floor = post_signed(
        rig.http, f"{rig.floor}/slack/events", body, SIGNING_SECRET, content_type="application/json"
    )
    bot_ms, floor_ms = await asyncio.gather(timed_ms(proc.event(rig.http, body)), timed_ms(_status(floor)))
    return sent, bot_ms, floor_ms


async def _status(answer: Any) -> int:
    return int((await answer).status)


async def run_phase(rig: Rig, phase: Phase) -> dict[str, Any]:
    people = [f"U{(rig.next_question + i) % rig.users + 1}" for i in range(phase.count)]
    texts = [f"<@UBOT> question {rig.next_question + i}" for i in range(phase.count)]
    rig.next_question += phase.count
    async with rig.http.post(rig.urls["messages"], json=list(zip(people, texts, strict=True))) as r:
        threads: list[str] = await r.json()  # Slack keeps the mentions: the bot may read them
    bodies = [
        event_body(mention(text, user=user, ts=ts))
        for user, text, ts in zip(people, texts, threads, strict=True)
    ]
    pids = [p.proc.pid for p in rig.fleet.procs if p is not None and p.proc is not None]
    before_db, before_stats, before_cpu = await db_counts(rig), await fake_stats(rig), cpu_seconds(pids)
    peak = [rss_mb(pids)]
    sampler = asyncio.create_task(sample_rss(pids, peak))
    start = time.monotonic()
    sends = []
    for i, body in enumerate(bodies):
        await asyncio.sleep(max(0.0, start + i * phase.interval - time.monotonic()))
        sends.append(asyncio.create_task(deliver(rig, body)))
    results = await asyncio.gather(*sends)
    deadline = max(sent for sent, _, _ in results) + rig.allowance + GRACE
    stats = before_stats
    while time.monotonic() < deadline:
        stats = await fake_stats(rig)
        if all(ts in stats["answered"] for ts in threads):
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - start
    after_db = await settled(rig)
    cpu = cpu_seconds(pids) - before_cpu
    counted = time.monotonic() - start  # CPU and database work were counted over this window
    sampler.cancel()
    db = {key: after_db.get(key, 0.0) - before_db.get(key, 0.0) for key in after_db}
    bot_acks = [b for _, b, _ in results if b is not None]
    floor_acks = [f for _, _, f in results if f is not None]
    waits = [
        stats["answered"][ts] - sent
        for ts, (sent, _, _) in zip(threads, results, strict=True)
        if ts in stats["answered"]
    ]
    answers = len(waits)
    bot, floor = ack_summary(bot_acks), ack_summary(floor_acks)
    statements = sum(db.get(k, 0.0) for k in ("select", "insert", "update", "delete", "other"))
    transactions = db.get("begin", 0.0) + db.get("autocommit", 0.0)

    def per_answer(value: float) -> float | None:
        return round(value / answers, 3) if answers else None

    def ratio(key: str) -> float | None:
        b, f = bot[key], floor[key]
        return round(b / f, 2) if b is not None and f else None

    return {
        "phase": phase.name,
        "rate": phase.rate,
        "deliveries": phase.count,
        "seconds": round(elapsed, 2),
        "counted_seconds": round(counted, 2),
        "ack_ms": {"bot": rounded(bot), "floor": rounded(floor)},
        "ack_ratio": {"p50": ratio("p50"), "p99": ratio("p99")},
        "acks_over_3s": sum(b is None or b > SLOW_ACK_MS for _, b, _ in results),
        "failed_deliveries": {
            "bot": sum(b is None for _, b, _ in results),
            "floor": sum(f is None for _, _, f in results),
        },
        "answers": answers,
        "answers_on_time": sum(w <= rig.allowance for w in waits),
        "answer_s": {"p50": round(statistics.median(waits), 3), "p99": round(percentile(waits, 99), 3)}
        if waits
        else None,
        "cpu_seconds": round(cpu, 2),
        "cpu_seconds_per_answer": per_answer(cpu),
        "peak_rss_mb": round(peak[0], 1),  # summed over the bot processes
        "slack_connections": stats["slack_connections"] - before_stats["slack_connections"],
        "model_connections": stats["model_connections"] - before_stats["model_connections"],
        "db": {key: int(value) for key, value in sorted(db.items())},
        "db_transactions_per_answer": per_answer(transactions),
        "db_statements_per_answer": per_answer(statements),
    }


def phases_of(rates: list[float], duration: float, burst: int) -> list[Phase]:
    out = [Phase(f"{r:g}/s", max(1, round(r * duration)), 1 / r, r) for r in rates]
    if burst:
        out.append(Phase(f"burst {burst}", burst, 0.0))
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    fakes, urls = await child(
        "fakes_process.py",
        *("--delay", str(args.ttft), "--tokens", str(args.tokens)),
        *("--token-interval", str(args.token_interval), "--users", str(args.users)),
    )
    floor_proc, floor = await child(
        "signature_floor.py", env=os.environ | {"SLACK_SIGNING_SECRET": SIGNING_SECRET}
    )
    report: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            if args.database_url:
                db_url = await fresh_database(args.database_url)
            # bot_env reads the fakes' URLs from these attributes; the fakes live in their own process
            slack = types.SimpleNamespace(api_url=urls["slack"])
            llm = types.SimpleNamespace(base_url=urls["llm"])
            env = bot_env(slack, llm, db_url, LOG_LEVEL="WARNING")  # type: ignore[arg-type]
            fleet = Fleet(env, Path(tmp), args.processes)
            await fleet.start()
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=timeout
            ) as http:
                rig = Rig(fleet, floor["url"], urls, http, args.users, args.allowance)
                try:
                    await run_phase(rig, Phase("warm-up", WARMUP, 0.2))
                    phases = []
                    for phase in phases_of(args.rates, args.duration, args.burst):
                        phases.append(await run_phase(rig, phase))
                        show(phases[-1])
                finally:
                    await fleet.stop()
            logs = "".join(p.log for p in fleet.started)
    finally:
        await close_child(fakes)
        await close_child(floor_proc)
    report = {
        "config": {
            "database": db_url.split(":", 1)[0],
            "processes": args.processes,
            "ttft_s": args.ttft,
            "tokens": args.tokens,
            "token_interval_s": args.token_interval,
            "answer_allowance_s": args.allowance,
            "users": args.users,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "phases": phases,
        "goals": goals(phases),
        "bot_log_lines": len(logs.splitlines()),  # WARNING and up; their text is not copied here
    }
    print("goals:", json.dumps(report["goals"]))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2))
    return report


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default="5,10,20,50", help="sustained mentions per second, comma-separated"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each rate is held")
    parser.add_argument("--burst", type=int, default=60, help="mentions sent at once (0: none)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--processes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--json", default=None, help="write the report here")
    parser.add_argument("--ttft", type=float, default=0.3, help="model: seconds to the first token")
    parser.add_argument("--tokens", type=int, default=50, help="model: tokens (deltas) per answer")
    parser.add_argument("--token-interval", type=float, default=0.02, help="model: seconds between tokens")
    parser.add_argument(
        "--allowance", type=float, default=5.0, help="seconds an answer may take to be on time"
    )
    parser.add_argument("--users", type=int, default=100, help="people taking turns to mention the bot")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    return args


if __name__ == "__main__":
    asyncio.run(main(arguments()))
