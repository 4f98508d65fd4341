"""Ack latency under a burst: 100 concurrent signed mentions while the model takes 1.5 s a call.

Run by hand:  .venv/bin/python bench/ack_latency.py [--n 100] [--delay 1.5]
Three processes, as in production: the bot (`python -m bot`, HTTP mode), the fake Slack and model
(bench/fakes_process.py), and this load generator. Goal on a 2-core machine: p99 ack < 100 ms,
all answers posted within 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.slack_requests import event_body, mention, sign  # noqa: E402

SECRET = "bench-signing-secret"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(400):
        try:
            async with http.get(f"{url}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("the bot did not become healthy")


async def main(n: int, delay: float) -> None:
    fakes = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "fakes_process.py"),
        "--delay",
        str(delay),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fakes.stdout is not None and fakes.stdin is not None
    urls = json.loads(await fakes.stdout.readline())
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
        env |= {
            "PYTHONPATH": str(ROOT),
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": urls["slack"],
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": urls["llm"],
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "PORT": str(port),
            "RUN_SCHEDULER": "false",
            "LOG_LEVEL": "WARNING",
        }
        bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                await wait_healthy(http, url)
                bodies = [event_body(mention(f"<@UBOT> q{i}", ts=f"{1000 + i}.1")) for i in range(n)]

                async def send(body: bytes) -> float:
                    headers = sign(SECRET, body) | {"Content-Type": "application/json"}
                    t0 = time.perf_counter()
                    async with http.post(f"{url}/slack/events", data=body, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    return (time.perf_counter() - t0) * 1000

                start = time.perf_counter()
                acks = await asyncio.gather(*(send(b) for b in bodies))
                stats: dict = {}
                while time.perf_counter() - start < 60:
                    async with http.get(urls["stats"]) as r:
                        stats = await r.json()
                    if stats["answers"] >= n:
                        break
                    await asyncio.sleep(0.02)
                done = time.perf_counter() - start
        finally:
            bot.terminate()
            await bot.wait()
            fakes.stdin.close()
            await fakes.wait()
    print(f"mentions: {n}, model latency: {delay} s, answers posted: {stats['answers']}")
    p50, p99 = statistics.median(acks), percentile(acks, 99)
    print(f"ack p50: {p50:.1f} ms, p99: {p99:.1f} ms, max: {max(acks):.1f} ms")
    print(f"all answers posted after: {done:.2f} s; max concurrent model calls: {stats['max_in_flight']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--delay", type=float, default=1.5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.delay))
