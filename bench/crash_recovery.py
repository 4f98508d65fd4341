"""Crash recovery: N conversations in flight while a process or the database fails, counted.

Run by hand:  .venv/bin/python bench/crash_recovery.py [--n 40] [--kills 4] [--processes 1]
                  [--database-url postgresql://...]        (default: a fresh SQLite file)
Postgres faults (a throwaway server of the bench's own, as tests/postgres.py starts them):
              .venv/bin/python bench/crash_recovery.py --postgres --fault restart --n 200
    --fault kill        SIGKILL a web process, start it again (the default, also on SQLite)
    --fault kill-clock  SIGKILL the clock process, start it again
    --fault restart     `pg_ctl restart -m fast` mid-traffic (add --pgbouncer: behind PgBouncer)
    --fault sigterm     SIGTERM a web process while long answers are in flight: it hands them
                        over (leases released) and the other web process finishes them
    --fault none        no fault: with --max-connections 20 (a server smaller than the pools) or
                        --lease 3 (short leases under load)
With --postgres the bot runs as an operator runs it (Procfile): --processes web processes
(default 2, RUN_SCHEDULER=false) and one `python -m bot clock`.

The fake Slack and model live in this process (they survive every kill and count what Slack
saw); the web processes sit behind a round-robin "load balancer". Each question is a mention in
its own thread, delivered like Slack does: a refused or failed delivery is retried (Slack's 3
retries: at once, after 1 and after 5 minutes, compressed to 0.5 s, 6 s and 30 s). The model
takes 0.3-1.5 s per answer, so faults land mid-answer. Reports answered-exactly-once, lost,
doubled, placeholders left behind, apologies by whom they blame (every apology is wrong here:
the model and Slack never fail, and the database's faults are to be ridden out), 5xx acks, and
ERROR / duplicate-key lines in the bot's and the server's logs.
Goal: 100% exactly once, 0 lost, 0 doubled, 0 placeholders, 0 apologies, 0 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bot_process import BotProcess, bot_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import event_body, mention

RETRY_DELAYS = (0.5, 6.0, 30.0)  # Slack's retries (about 0 s, 1 min, 5 min), ten times faster
FAULTS = ("kill", "kill-clock", "restart", "sigterm", "none")
# An apology's words -> whom it blames (bot/slack/answering/conversation.py, bot/slack/door/deliveries.py).
BLAMES = {
    "language model": "model",
    "database": "database",
    "went wrong on my side": "bot",
    "gave up": "gave up",
    "couldn't post": "slack",
}


def answer_for(question: str) -> str:
    return f"answer to {question}"


@dataclass
class Scenario:
    n: int = 40
    faults: int = 4
    fault: str = "kill"
    processes: int = 1
    clock: bool = False
    postgres: bool = False  # a throwaway server of our own (restart and max_connections need it)
    database_url: str | None = None  # an empty database elsewhere (kills only)
    pgbouncer: bool = False
    max_connections: int | None = None
    lease: float = 2.0
    model_delay: tuple[float, float] = (0.3, 1.5)
    gap: float = 0.15  # seconds between two mentions
    drain: float | None = None  # SHUTDOWN_DRAIN_SECONDS of the web processes
    long_answer: float = 40.0  # seconds an answer takes while a SIGTERM is coming: over the drain
    seed: int = 11
    log_level: str = "WARNING"


@dataclass
class Outcome:
    scenario: Scenario
    counts: dict[str, int]
    placeholders: int
    apologies: dict[str, int]  # whom each apology blamed -> how many
    statuses: list[int]  # every HTTP status the deliveries got
    delivered_on: list[int]  # the attempt (0 = first delivery) that got each event its 2xx
    recovered: list[float]
    log: str  # every bot process's log
    stop_seconds: list[float] = field(default_factory=list)
    sigkilled: int = 0  # SIGTERMed processes killed after 30 s
    server_log: str = ""
    examples: list[str] = field(default_factory=list)

    @property
    def once(self) -> int:
        return sum(c == 1 for c in self.counts.values())

    @property
    def lost(self) -> list[str]:
        return sorted(q for q, c in self.counts.items() if c == 0)

    @property
    def doubled(self) -> list[str]:
        return sorted(q for q, c in self.counts.items() if c > 1)

    @property
    def server_errors(self) -> int:
        return sum(s >= 500 for s in self.statuses)

    def error_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if " ERROR " in line or " CRITICAL " in line]

    def duplicate_key_lines(self) -> list[str]:
        both = self.log.splitlines() + self.server_log.splitlines()
        return [line for line in both if "duplicate key" in line]


def model(rng: random.Random, scenario: Scenario, slow: asyncio.Event) -> Any:
    def respond(body: dict[str, Any]) -> Reply:
        last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        wait = scenario.long_answer if slow.is_set() else rng.uniform(*scenario.model_delay)
        return Reply(content=answer_for(last.split()[-1]), delay=wait)

    return respond


class Fleet:
    """The web processes behind a load balancer, and the clock; faults kill, stop and restart them."""

    def __init__(self, env: dict[str, str], cwd: Path, size: int, clock: bool = False) -> None:
        self.env, self.cwd = env, cwd
        self.procs: list[BotProcess | None] = [None] * size
        self.clock: BotProcess | None = None
        self.with_clock = clock
        self.started: list[BotProcess] = []  # every process, killed ones too: their logs
        self.turn = 0
        self.stop_seconds: list[float] = []  # SIGTERM to exit, for each graceful stop
        self.sigkilled = 0  # graceful stops that took over 30 s

    async def start(self) -> None:
        first = await self._new()  # one migrates; the rest find the schema current
        rest = await asyncio.gather(*(self._new() for _ in self.procs[1:]))
        self.procs = [first, *rest]
        if self.with_clock:
            self.clock = await self._new("clock")

    async def _new(self, command: str = "serve") -> BotProcess:
        env = self.env | {"RUN_SCHEDULER": "true"} if command == "clock" else self.env
        proc = await BotProcess(env, self.cwd, command).start(timeout=60)
        self.started.append(proc)
        return proc

    def pick(self) -> BotProcess | None:
        """Round robin over the processes in rotation (None: none is)."""
        live = [p for p in self.procs if p is not None]
        self.turn += 1
        return live[self.turn % len(live)] if live else None

    async def kill_one(self, rng: random.Random) -> None:
        """SIGKILL one web process; returns when its replacement is healthy."""
        i = rng.randrange(len(self.procs))
        proc, self.procs[i] = self.procs[i], None
        assert proc is not None
        await proc.kill()
        self.procs[i] = await self._new()

    async def kill_clock(self) -> None:
        assert self.clock is not None
        await self.clock.kill()
        self.clock = await self._new("clock")

    async def stop_one(self, rng: random.Random) -> None:
        """A rolling deploy: out of rotation, SIGTERM (it hands its unfinished work over), then
        a new process in its place once it has exited. Like Heroku, SIGKILL after 30 s."""
        i = rng.randrange(len(self.procs))
        proc, self.procs[i] = self.procs[i], None
        assert proc is not None
        began = time.monotonic()
        try:
            await proc.stop()  # waits 30 s for the exit
        except TimeoutError:
            await proc.kill()
            self.sigkilled += 1
        self.stop_seconds.append(time.monotonic() - began)
        self.procs[i] = await self._new()

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in [*self.procs, self.clock] if p is not None))


async def deliver(
    fleet: Fleet, http: aiohttp.ClientSession, body: bytes, outcome: Outcome, acked: list[str], q: str
) -> bool:
    """Like Slack: the first delivery, then up to 3 retries until a 2xx."""
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        proc = fleet.pick()
        try:
            if proc is not None:
                status = await proc.event(http, body, retry_num=attempt or None)
                outcome.statuses.append(status)
                if status < 300:
                    outcome.delivered_on.append(attempt)
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


def blamed(slack: FakeSlack) -> dict[str, int]:
    """Every message that is neither an answer nor a placeholder, by whom it blames."""
    out: dict[str, int] = {}
    messages = [*slack.posted(channel="C1"), *slack.ephemerals]
    for text in (str(m.get("text", "")) for m in messages):
        if text.startswith("answer to ") or "Thinking" in text:
            continue
        who = next((w for words, w in BLAMES.items() if words in text), "other")
        out[who] = out.get(who, 0) + 1
    return out


@contextlib.asynccontextmanager
async def database(scenario: Scenario, tmp: str) -> AsyncIterator[tuple[str, dict[str, str], Any]]:
    """(the bots' DATABASE_URL, extra environment, the server or None) for the scenario."""
    if not scenario.postgres:
        yield scenario.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db", {}, None
        return
    from bot.db import Database
    from tests.postgres import PostgresServer, fresh_database, pgbouncer

    settings: dict[str, str | int] = {"log_min_error_statement": "error"}
    if scenario.max_connections:
        settings["max_connections"] = scenario.max_connections
    server = PostgresServer(**settings)
    try:
        server.start()
        url = await fresh_database(server.url)
        if not scenario.pgbouncer:
            yield url, {}, server
            return
        migrator = Database(url)  # migrations take a session lock: not through transaction pooling
        await migrator.create_schema()
        await migrator.close()
        async with pgbouncer(server.url) as port:
            through = url.replace(f":{server.port}/", f":{port}/")
            yield through, {"DB_PGBOUNCER": "true", "AUTO_MIGRATE": "false"}, server
    finally:
        await asyncio.to_thread(server.remove)


async def run(scenario: Scenario) -> Outcome:
    """Run one scenario against fresh fakes and a fresh database; what Slack was shown."""
    rng = random.Random(scenario.seed)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # a killed peer's reset connections
    slack, llm = FakeSlack(), FakeOpenAI()
    users = [f"U{i}" for i in range(1, 9)]  # eight people, so no one reaches USER_MAX_CONCURRENT_RUNS
    for user in users:
        slack.add_user(user, user.lower())
    slack.add_channel("C1", "general", members=tuple(users))
    slow = asyncio.Event()
    llm.responder = model(rng, scenario, slow)
    await slack.start()
    await llm.start()
    questions = [f"q{i:03d}" for i in range(scenario.n)]
    outcome = Outcome(scenario, {}, 0, {}, [], [], [], "")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with database(scenario, tmp) as (db_url, extra, server):
                env = bot_env(slack, llm, db_url, WORK_LEASE_SECONDS=str(scenario.lease), **extra)
                env["LOG_LEVEL"] = scenario.log_level
                if scenario.drain is not None:
                    env["SHUTDOWN_DRAIN_SECONDS"] = str(scenario.drain)
                fleet = Fleet(env, Path(tmp), scenario.processes, scenario.clock)
                await fleet.start()
                try:
                    await _traffic(scenario, fleet, slack, questions, outcome, rng, server, slow)
                finally:
                    outcome.stop_seconds, outcome.sigkilled = fleet.stop_seconds, fleet.sigkilled
                    await fleet.stop()
                    outcome.log = "".join(f"=== process {i}\n{p.log}" for i, p in enumerate(fleet.started))
                    outcome.server_log = server.log_text() if server is not None else ""
        outcome.counts = shown(slack, questions)
        outcome.placeholders = sum("Thinking" in str(m.get("text", "")) for m in slack.posted(channel="C1"))
        outcome.apologies = blamed(slack)
        for q in [q for q, c in outcome.counts.items() if c != 1][:3]:  # what Slack shows there
            ts = f"{1000 + questions.index(q)}.000100"
            texts = [str(m.get("text", ""))[:90] for m in slack.posted(channel="C1", thread_ts=ts)]
            outcome.examples.append(f"{q}: {texts}")
    finally:
        await slack.stop()
        await llm.stop()
    return outcome


async def _traffic(
    scenario: Scenario,
    fleet: Fleet,
    slack: FakeSlack,
    questions: list[str],
    outcome: Outcome,
    rng: random.Random,
    server: Any,
    slow: asyncio.Event,
) -> None:
    users = [f"U{i}" for i in range(1, 9)]
    fault_times: list[tuple[float, list[str]]] = []
    acked: list[str] = []  # questions a bot process has acked (so has recorded), in order
    async with aiohttp.ClientSession() as http:

        async def send_all() -> None:
            deliveries = []
            for i, q in enumerate(questions):
                event = mention(f"<@UBOT> please answer {q}", ts=f"{1000 + i}.000100", user=users[i % 8])
                slack.add_message("C1", event["user"], event["text"], event["ts"])  # Slack keeps it
                body = event_body(event)
                deliveries.append(asyncio.create_task(deliver(fleet, http, body, outcome, acked, q)))
                await asyncio.sleep(scenario.gap)
            assert all(await asyncio.gather(*deliveries)), "a delivery failed 4 times"

        async def one_fault() -> None:
            if scenario.fault == "kill":
                await fleet.kill_one(rng)
            elif scenario.fault == "kill-clock":
                await fleet.kill_clock()
            elif scenario.fault == "restart":
                await asyncio.to_thread(server.restart, "fast")
            elif scenario.fault == "sigterm":
                slow.set()  # the answers started from now on outlast the drain
                await asyncio.sleep(2.0)
                slow.clear()  # the redone ones are quick
                await fleet.stop_one(rng)

        async def fault_randomly() -> None:
            if scenario.fault == "none":
                return
            for _ in range(scenario.faults):
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                before = list(acked)
                fault_times.append((time.monotonic(), before))
                await one_fault()

        deadline = time.monotonic() + 180 + scenario.n * scenario.gap

        async def watch_recovery() -> None:
            """For each fault: the time until every question acked before it is answered."""
            while time.monotonic() < deadline:
                counts = shown(slack, questions)
                for item in list(fault_times):
                    at, before = item
                    if all(counts[q] >= 1 for q in before):
                        outcome.recovered.append(time.monotonic() - at)
                        fault_times.remove(item)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_recovery())
        await asyncio.gather(send_all(), fault_randomly())
        while time.monotonic() < deadline and any(c == 0 for c in shown(slack, questions).values()):
            await asyncio.sleep(0.1)
        await asyncio.sleep(max(3.0, scenario.lease * 1.5))  # anything doubled arrives within a lease
        watcher.cancel()


def report(outcome: Outcome) -> None:
    s = outcome.scenario
    where = "postgres" if s.postgres else (s.database_url or "sqlite").split(":", 1)[0]
    n = s.n
    print(
        f"conversations: {n}, fault: {s.fault} x{s.faults}, web processes: {s.processes}, "
        f"clock: {s.clock}, database: {where}{' via pgbouncer' if s.pgbouncer else ''}, "
        f"max_connections: {s.max_connections or 'default'}, lease: {s.lease} s, seed: {s.seed}"
    )
    for line in outcome.examples:
        print(f"  {line}")
    print(f"answered exactly once: {outcome.once}/{n} ({100 * outcome.once / n:.1f}%)")
    lost, doubled = outcome.lost, outcome.doubled
    print(f"lost: {len(lost)} {lost[:5]}   doubled: {len(doubled)} {doubled[:5]}")
    print(f"placeholders left behind: {outcome.placeholders}")
    print(f"apologies (by whom they blame): {outcome.apologies or 'none'}")
    print(f"HTTP 5xx acks: {outcome.server_errors} of {len(outcome.statuses)} deliveries")
    tries = {a: outcome.delivered_on.count(a) for a in range(len(RETRY_DELAYS) + 1)}
    print(f"events acked on the first delivery / retry 1 / 2 / 3: {' / '.join(map(str, tries.values()))}")
    errors, dupes = outcome.error_lines(), outcome.duplicate_key_lines()
    print(f"ERROR lines in the bots' logs: {len(errors)}; duplicate-key lines (bots + server): {len(dupes)}")
    for line in (errors + dupes)[:5]:
        print(f"  {line[:200]}")
    if outcome.stop_seconds:
        took = ", ".join(f"{t:.1f}" for t in outcome.stop_seconds)
        print(f"SIGTERM to exit: {took} s; SIGKILLed after 30 s: {outcome.sigkilled}")
    if outcome.recovered:
        print(
            f"time from a fault until all earlier questions were answered: median "
            f"{statistics.median(outcome.recovered):.1f} s, max {max(outcome.recovered):.1f} s "
            f"({len(outcome.recovered)} faults)"
        )
    met = outcome.once == n and not outcome.placeholders and not outcome.apologies
    print("goal (100% exactly once, 0 placeholders, 0 apologies):", "met" if met else "NOT met")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--kills", "--faults", dest="faults", type=int, default=4)
    parser.add_argument("--fault", choices=FAULTS, default="kill")
    parser.add_argument("--processes", type=int, default=None, help="web processes (1; 2 on --postgres)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway Postgres server, and a clock")
    parser.add_argument("--pgbouncer", action="store_true", help="behind PgBouncer in transaction mode")
    parser.add_argument("--max-connections", type=int, default=None, help="the server's max_connections")
    parser.add_argument("--lease", type=float, default=2.0, help="WORK_LEASE_SECONDS")
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between two mentions")
    parser.add_argument("--model-delay", type=float, nargs=2, default=(0.3, 1.5), metavar=("MIN", "MAX"))
    parser.add_argument("--drain", type=float, default=None, help="SHUTDOWN_DRAIN_SECONDS")
    parser.add_argument("--long-answer", type=float, default=40.0, help="seconds, while a SIGTERM comes")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "crash_recovery.log"))
    args = parser.parse_args()
    own_server = args.pgbouncer or args.max_connections or args.fault in ("restart", "kill-clock")
    if own_server and not args.postgres:
        parser.error("--pgbouncer, --max-connections, restart and kill-clock need --postgres")
    scenario = Scenario(
        n=args.n,
        faults=args.faults,
        fault=args.fault,
        processes=args.processes or (2 if args.postgres else 1),
        clock=args.postgres,
        postgres=args.postgres,
        database_url=args.database_url,
        pgbouncer=args.pgbouncer,
        max_connections=args.max_connections,
        lease=args.lease,
        model_delay=tuple(args.model_delay),
        gap=args.gap,
        drain=args.drain,
        long_answer=args.long_answer,
        seed=args.seed,
        log_level=args.log_level,
    )
    outcome = asyncio.run(run(scenario))
    logs = Path(args.log)
    logs.write_text(outcome.log + "\n=== postgres server\n" + outcome.server_log)
    print(f"bot logs ({scenario.log_level} and up) and the server's: {logs}")
    report(outcome)


if __name__ == "__main__":
    main()
