"""Hostile pages vs everyone else: normal page extractions while hostile ones parse.

Run by hand:  .venv/bin/python bench/extract_isolation.py [--hostile 2] [--normal 20] [--deadline 3]
                  [--queue 6] [--workers 2] [--fairness-only]
Three rounds, each timing `--normal` ordinary article extractions (one after another, as users'
fetches arrive) while `--hostile` pages of nested tables (several CPU-seconds each) are parsed:
  floor     no hostile page at all (measured in the same run, the figure to compare against)
  thread    the old way: trafilatura in asyncio.to_thread, which no timeout can stop
  process   tools/parsing/extract.py: worker processes killed at --deadline
Reports the normal extractions' median and worst latency and how long the hostile work kept a
core busy. Goal: with processes, normal latency stays near the floor and hostile work ends at
the deadline.

Then fairness (issue 22): on a pool of `--workers`, person A asks for `--queue` hostile pages,
then person B for one article; B's latency is timed twice:
  one queue   every job in one first-come queue (the old semaphore: B waits behind all of A's)
  fair        jobs queued by person (tools/parsing/fair_slots.py): B's page takes the first free worker
Goal: fair stays under one --deadline (plus a worker's start-up when a killed one is replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.web import ARTICLE  # noqa: E402
from tests.test_extract import hostile_page  # noqa: E402
from tools.parsing.extract import ExtractError, Extractor, html_to_text  # noqa: E402


async def normal_latencies(run_one, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await run_one(ARTICLE.encode())
        out.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)
    return out


def report(name: str, lat: list[float], hostile_s: float | None) -> None:
    tail = "" if hostile_s is None else f", hostile work ran {hostile_s:.1f} s"
    median, worst = statistics.median(lat) * 1000, max(lat) * 1000
    print(f"{name:8} normal median {median:7.1f} ms, worst {worst:7.1f} ms{tail}")


async def behind_hostile(pool: Extractor, page: bytes, queue: int, owners: tuple[str, str]) -> float:
    """Seconds B's article takes when asked right after A's `queue` hostile pages."""
    await pool.settle()
    await pool.warm()

    async def doomed() -> None:
        with contextlib.suppress(ExtractError):
            await pool.run("html", page, owner=owners[0])

    burners = [asyncio.create_task(doomed()) for _ in range(queue)]
    while pool.slots.free:  # A's pages hold every worker
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    await pool.run("html", ARTICLE.encode(), owner=owners[1])
    latency = time.perf_counter() - started
    for burner in burners:
        burner.cancel()
    await asyncio.gather(*burners, return_exceptions=True)
    return latency


async def fairness(page: bytes, queue: int, workers: int, deadline: float) -> None:
    pool = Extractor(workers=workers, deadline=deadline)
    try:
        before = await behind_hostile(pool, page, queue, ("", ""))
        after = await behind_hostile(pool, page, queue, ("A", "B"))
    finally:
        await pool.close()
    print(
        f"another person's page behind {queue} hostile pages ({workers} workers, deadline "
        f"{deadline:g} s): one queue {before:.1f} s, fair {after:.1f} s"
    )


async def main(hostile: int, normal: int, deadline: float) -> None:
    page = hostile_page().encode()
    pool = Extractor(workers=hostile + 1, deadline=deadline)
    await pool.warm()
    try:
        report("floor", await normal_latencies(lambda d: pool.run("html", d), normal), None)

        started = time.perf_counter()
        burners = [asyncio.create_task(asyncio.to_thread(html_to_text, page)) for _ in range(hostile)]
        lat = await normal_latencies(lambda d: asyncio.to_thread(html_to_text, d), normal)
        await asyncio.gather(*burners)
        report("thread", lat, time.perf_counter() - started)

        started = time.perf_counter()

        async def doomed() -> None:
            try:
                await pool.run("html", page)
            except ExtractError:
                pass

        burners = [asyncio.create_task(doomed()) for _ in range(hostile)]
        await asyncio.sleep(0.2)
        lat = await normal_latencies(lambda d: pool.run("html", d), normal)
        await asyncio.gather(*burners)
        report("process", lat, time.perf_counter() - started)
        print(f"workers killed on the deadline: {pool.killed}")
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--hostile", type=int, default=2)
    parser.add_argument("--normal", type=int, default=20)
    parser.add_argument("--deadline", type=float, default=3.0)
    parser.add_argument("--queue", type=int, default=6, help="person A's hostile pages (fairness)")
    parser.add_argument("--workers", type=int, default=2, help="the pool's size (fairness)")
    parser.add_argument("--fairness-only", action="store_true", help="skip the isolation rounds")
    args = parser.parse_args()
    if not args.fairness_only:
        asyncio.run(main(args.hostile, args.normal, args.deadline))
    asyncio.run(fairness(hostile_page().encode(), args.queue, args.workers, args.deadline))
