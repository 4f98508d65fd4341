"""Agent-loop overhead: one tool round trip (model -> tool -> model) on a zero-latency fake.

Run by hand:  .venv/bin/python bench/agent_overhead.py [--n 200]
Compares our loop with the floor (two bare AsyncOpenAI calls to the same fake server) and with
the OpenAI Agents SDK (`openai-agents`, installed in its own environment, bench/.venv-agents,
created on first run). Goal: our overhead over the floor at most a third of the SDK's. Also
checks that 5 tools of 200 ms each, asked for in one turn, finish in under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from openai import AsyncOpenAI

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from roundtrip_common import QUESTION, floor_once, median_ms  # noqa: E402

from bot.db import Database  # noqa: E402
from bot.db.trace import DbTrace  # noqa: E402
from orchestrators.llm import Agent, Limits  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall  # noqa: E402
from tools import ToolRegistry, tool  # noqa: E402
from tools.context import MemoryTrace, ToolContext  # noqa: E402

AGENTS_VENV = HERE / ".venv-agents"


@tool(timeout=5)
async def lookup(ctx: ToolContext, city: str) -> dict:
    """Weather for a city."""
    return {"city": city, "temp_c": 30}


@tool(timeout=5)
async def slow(ctx: ToolContext, n: int) -> dict:
    """Takes 200 ms."""
    await asyncio.sleep(0.2)
    return {"n": n}


def responder(body: dict) -> Reply:
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply(content="It is 30°C in Karachi.", usage=(100, 10))
    if "five" in (last.get("content") or ""):
        return Reply(tool_calls=[ToolCall("slow", {"n": i}) for i in range(5)], usage=(100, 10))
    return Reply(tool_calls=[ToolCall("lookup", {"city": "Karachi"})], usage=(100, 10))


def ensure_agents_env() -> Path:
    python = AGENTS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AGENTS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "openai-agents"], check=True)
    return python


async def main(n: int) -> None:
    python = ensure_agents_env()
    async with FakeOpenAI() as llm, aiohttp.ClientSession() as http:
        llm.responder = responder
        client = AsyncOpenAI(api_key="sk-bench", base_url=llm.base_url, max_retries=0)
        # The same request content as the SDK's run: one tool, the same short instructions.
        agent = Agent(client, "bench-model", ToolRegistry([lookup]), Limits(), "Answer with the tools.")
        five = Agent(client, "bench-model", ToolRegistry([slow]), Limits(), "Answer with the tools.")

        async def ours() -> None:
            ctx = ToolContext(http=http, llm=client, trace=MemoryTrace())
            await agent.run([{"role": "user", "content": QUESTION}], ctx)

        with tempfile.TemporaryDirectory() as tmp:
            store = Database(f"sqlite+aiosqlite:///{tmp}/bench.db")
            await store.create_schema()
            run = await store.runs.start("bench")

            async def ours_db() -> None:
                ctx = ToolContext(http=http, llm=client, trace=DbTrace(store, run.id))
                await agent.run([{"role": "user", "content": QUESTION}], ctx)

            floor = await median_ms(lambda: floor_once(client), n)
            mine = await median_ms(ours, n)
            mine_db = await median_ms(ours_db, n)
            await store.close()

        proc = await asyncio.create_subprocess_exec(
            str(python),
            str(HERE / "agents_sdk_roundtrip.py"),
            "--base-url",
            llm.base_url,
            "--n",
            str(n),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        sdk = json.loads(out)

        ctx = ToolContext(http=http, llm=client, trace=MemoryTrace())
        t0 = time.perf_counter()
        await five.run([{"role": "user", "content": "run five slow tools"}], ctx)
        total = (time.perf_counter() - t0) * 1000
        model_ms = sum(s.duration_ms for s in ctx.trace.steps if s.kind == "model")
        assert llm.schema_errors == [], llm.schema_errors[:3]

    print(f"round trip, median of {n} (zero-latency fake model, same server for all):")
    print("| path | median | overhead over its floor |")
    print("|---|---:|---:|")
    print(f"| floor: two bare AsyncOpenAI calls | {floor:.2f} ms | - |")
    print(f"| Switchboard Agent loop (in-memory trace) | {mine:.2f} ms | {mine - floor:.2f} ms |")
    print(f"| Switchboard loop (SQLite trace, as in the bot) | {mine_db:.2f} ms | {mine_db - floor:.2f} ms |")
    print(f"| floor in the Agents SDK's process | {sdk['floor']:.2f} ms | - |")
    print(f"| OpenAI Agents SDK Runner.run | {sdk['sdk']:.2f} ms | {sdk['sdk'] - sdk['floor']:.2f} ms |")
    ratio = (mine - floor) / max(sdk["sdk"] - sdk["floor"], 1e-9)
    print(f"our overhead / SDK overhead: {ratio:.2f} (goal <= 0.33)")
    print(
        f"5 tools x 200 ms in one turn: tool phase {total - model_ms:.0f} ms (goal < 300 ms), "
        f"whole run {total:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
