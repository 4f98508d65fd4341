"""Crash recovery: N conversations in flight, the bot kill -9'd at random moments, restarted.

Run by hand:  .venv/bin/python bench/crash_recovery.py [--n 40] [--kills 4] [--processes 1]
              [--database-url postgresql://...]   (default: a fresh SQLite file)

The fake Slack and model live in this process (they survive every kill and count what Slack
saw); the bot runs as real `python -m bot serve` processes behind a round-robin "load balancer".
Each question is a mention in its own thread, delivered like Slack does: a refused or failed
delivery is retried (Slack's 3 retries: at once, after 1 and after 5 minutes, compressed to
0.5 s, 6 s and 30 s). The model takes 0.3-1.5 s per
answer, so kills land mid-answer. Reports answered-exactly-once %, lost, doubled, placeholders
left behind, and the time from each kill until every question acked before it was answered
(questions refused while no process was up wait for Slack's retries: that is not recovery time).
Goal: 100% exactly once, 0 lost, 0 doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bot_process import BotProcess, bot_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import event_body, mention

LEASE_SECONDS = "2"
RETRY_DELAYS = (0.5, 6.0, 30.0)  # Slack's retries (about 0 s, 1 min, 5 min), ten times faster


def answer_for(question: str) -> str:
    return f"answer to {question}"


def model(rng: random.Random) -> Any:
    def respond(body: dict[str, Any]) -> Reply:
        last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        return Reply(content=answer_for(last.split()[-1]), delay=rng.uniform(0.3, 1.5))

    return respond


class Fleet:
    """The bot processes and a load balancer over them; `kill_one` SIGKILLs and restarts one."""

    def __init__(self, env: dict[str, str], cwd: Path, size: int) -> None:
        self.env, self.cwd = env, cwd
        self.procs: list[BotProcess | None] = [None] * size
        self.started: list[BotProcess] = []  # every process, killed ones too: their logs
        self.turn = 0

    async def start(self) -> None:
        self.procs = list(await asyncio.gather(*(self._new() for _ in self.procs)))

    async def _new(self) -> BotProcess:
        proc = await BotProcess(self.env, self.cwd, "serve").start(timeout=60)
        self.started.append(proc)
        return proc

    def pick(self) -> BotProcess | None:
        self.turn += 1
        return self.procs[self.turn % len(self.procs)]

    async def kill_one(self, rng: random.Random) -> float:
        """Kill one process; returns when its replacement is healthy (the kill's time)."""
        i = rng.randrange(len(self.procs))
        proc, self.procs[i] = self.procs[i], None
        assert proc is not None
        killed = time.monotonic()
        await proc.kill()
        self.procs[i] = await self._new()
        return killed

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs if p is not None))


DELIVERED_ON: list[int] = []  # the attempt (0 = first delivery) that got each event its 2xx


async def deliver(fleet: Fleet, http: aiohttp.ClientSession, body: bytes, acked: list[str], q: str) -> bool:
    """Like Slack: the first delivery, then up to 3 retries until a 2xx."""
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        proc = fleet.pick()
        try:
            if proc is not None and await proc.event(http, body, retry_num=attempt or None) < 300:
                DELIVERED_ON.append(attempt)
                acked.append(q)
                return True
        except aiohttp.ClientError:
            pass
        if delay is None:
            return False
        await asyncio.sleep(delay)
    return False


def shown(slack: FakeSlack, questions: list[str]) -> dict[str, int]:
    texts = [str(m.get("text", "")) for m in slack.posted(channel="C1")]
    return {q: texts.count(answer_for(q)) for q in questions}


async def main(n: int, kills: int, processes: int, seed: int, database_url: str | None) -> None:
    rng = random.Random(seed)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # a killed peer's reset connections
    slack, llm = FakeSlack(), FakeOpenAI()
    users = [f"U{i}" for i in range(1, 9)]  # eight people, so no one reaches USER_MAX_CONCURRENT_RUNS
    for user in users:
        slack.add_user(user, user.lower())
    slack.add_channel("C1", "general", members=tuple(users))
    llm.responder = model(rng)
    await slack.start()
    await llm.start()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=LEASE_SECONDS)
        env["LOG_LEVEL"] = "WARNING"
        fleet = Fleet(env, Path(tmp), processes)
        await fleet.start()
        questions = [f"q{i:03d}" for i in range(n)]
        kill_times: list[tuple[float, list[str]]] = []
        acked: list[str] = []  # questions a bot process has acked (so has queued), in order
        async with aiohttp.ClientSession() as http:

            async def send_all() -> None:
                deliveries = []
                for i, q in enumerate(questions):
                    event = mention(f"<@UBOT> please answer {q}", ts=f"{1000 + i}.000100", user=users[i % 8])
                    slack.add_message("C1", event["user"], event["text"], event["ts"])  # Slack keeps it
                    body = event_body(event)
                    deliveries.append(asyncio.create_task(deliver(fleet, http, body, acked, q)))
                    await asyncio.sleep(0.15)
                assert all(await asyncio.gather(*deliveries)), "a delivery failed 4 times"

            async def kill_randomly() -> None:
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(0.5, 2.5))
                    before = list(acked)
                    kill_times.append((await fleet.kill_one(rng), before))

            recovered: list[float] = []
            deadline = time.monotonic() + 180

            async def watch_recovery() -> None:
                """For each kill: the time until every question acked before it is answered."""
                while (len(recovered) < kills or len(kill_times) < kills) and time.monotonic() < deadline:
                    counts = shown(slack, questions)
                    for item in list(kill_times):
                        killed, before = item
                        if all(counts[q] >= 1 for q in before):
                            recovered.append(time.monotonic() - killed)
                            kill_times.remove(item)
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_recovery())
            await asyncio.gather(send_all(), kill_randomly())
            while time.monotonic() < deadline and any(c == 0 for c in shown(slack, questions).values()):
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)  # anything doubled arrives within a lease or so
            watcher.cancel()
        await fleet.stop()
        logs = Path(tempfile.gettempdir()) / "crash_recovery.log"
        logs.write_text("".join(f"=== process {i}\n{p.log}" for i, p in enumerate(fleet.started)))
        print(f"bot logs (WARNING and up): {logs}")
    counts = shown(slack, questions)
    for q in [q for q, c in counts.items() if c != 1][:3]:  # what Slack shows in those threads
        ts = f"{1000 + questions.index(q)}.000100"
        print(f"  {q}: {[str(m.get('text', ''))[:90] for m in slack.posted(channel='C1', thread_ts=ts)]}")
    leftovers = sum("Thinking" in str(m.get("text", "")) for m in slack.posted(channel="C1"))
    once = sum(c == 1 for c in counts.values())
    lost = sorted(q for q, c in counts.items() if c == 0)
    doubled = sorted(q for q, c in counts.items() if c > 1)
    await slack.stop()
    await llm.stop()
    where = (database_url or "sqlite").split(":", 1)[0]
    print(f"conversations: {n}, kills: {kills}, processes: {processes}, seed: {seed}, database: {where}")
    print(f"answered exactly once: {once}/{n} ({100 * once / n:.1f}%)")
    print(f"lost: {len(lost)} {lost[:5]}   doubled: {len(doubled)} {doubled[:5]}")
    print(f"placeholders left behind: {leftovers}")
    tries = {a: DELIVERED_ON.count(a) for a in range(len(RETRY_DELAYS) + 1)}
    print(f"events acked on the first delivery / retry 1 / 2 / 3: {' / '.join(map(str, tries.values()))}")
    if recovered:
        print(
            f"time from a kill until all earlier questions were answered: median "
            f"{statistics.median(recovered):.1f} s, max {max(recovered):.1f} s ({len(recovered)} kills)"
        )
    print("goal (100% exactly once, 0 lost, 0 doubled):", "met" if once == n else "NOT met")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.kills, args.processes, args.seed, args.database_url))
