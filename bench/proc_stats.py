"""What a benchmark reads about processes from /proc: CPU seconds and resident memory of a
process and everything below it (the bot may start worker processes)."""

from __future__ import annotations

import asyncio
import os

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def descendants(pid: int) -> list[int]:
    """pid and every process below it (the bot may start worker processes)."""
    found, queue = [], [pid]
    while queue:
        p = queue.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    queue += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in (d for p in pids for d in descendants(p)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return total / TICK


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in (d for p in pids for d in descendants(p)):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1])
        except OSError:
            pass
    return total * PAGE_KB / 1024


async def sample_rss(pids: list[int], peak: list[float]) -> None:
    """Keeps peak[0] the highest resident memory seen, ten times a second, until cancelled."""
    while True:
        peak[0] = max(peak[0], rss_mb(pids))
        await asyncio.sleep(0.1)
