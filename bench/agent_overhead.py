"""Agent-loop overhead: one tool round trip (model -> tool -> model) on a zero-latency fake.

Run by hand:  .venv/bin/python bench/agent_overhead.py [--n 300]
Compares, in one run against the same fake server, the floor (two bare AsyncOpenAI calls), our
loop with an in-memory trace, the path the bot really runs (`traced_run`: the run row, every
step in SQLite, flushed before the answer would be posted, then the finish) and the OpenAI
Agents SDK (`openai-agents`, installed in its own environment, bench/.venv-agents, created on
first run). Each process samples its paths in turn, so load on a shared machine hits them alike.
Goal: the real path's overhead over its floor at most half the SDK's. Also checks that 5 tools
of 200 ms each, asked for in one turn, finish in under 300 ms.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from roundtrip_common import QUESTION, floor_once, interleaved_ms  # noqa: E402

from bot.db.queries.trace import DbTrace  # noqa: E402
from bot.runtime import create_runtime  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.work.traced_run import traced_run  # noqa: E402
from orchestrators.agent.loop import Agent, Limits  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall  # noqa: E402
from tools import ToolRegistry, tool  # noqa: E402
from tools.toolkit.context import MemoryTrace, ToolContext  # noqa: E402

AGENTS_VENV = HERE / ".venv-agents"
GOAL = 0.5  # real-path overhead / SDK overhead
INSTRUCTIONS = "Answer with the tools."  # the same short instructions as the SDK's agent


@tool(timeout=5)
async def lookup(ctx: ToolContext, city: str) -> dict[str, object]:
    """Weather for a city."""
    return {"city": city, "temp_c": 30}


@tool(timeout=5)
async def slow(ctx: ToolContext, n: int) -> dict[str, int]:
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


async def serve() -> None:
    """`--serve`: the fake model in a process of its own, so no measured process does its work.

    Prints its URL as one JSON line; on stdin's close prints the schema errors it saw, and stops.
    """
    async with FakeOpenAI() as llm:
        llm.responder = responder
        print(json.dumps({"url": llm.base_url}), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        print(json.dumps({"schema_errors": [str(e) for e in llm.schema_errors[:3]]}), flush=True)


async def sdk_figures(python: Path, base_url: str, n: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        str(python),
        str(HERE / "agents_sdk_roundtrip.py"),
        "--base-url",
        base_url,
        "--n",
        str(n),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return json.loads(out)


async def main(n: int) -> None:
    python = ensure_agents_env()
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert server.stdin is not None and server.stdout is not None
    base_url = json.loads(await server.stdout.readline())["url"]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": "bench-signing-secret",
                "SLACK_API_URL": "http://127.0.0.1:9/",  # never called
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": base_url,
                "OPENAI_MODEL": "bench-model",
                "LLM_MAX_RETRIES": "0",
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
            }
        )
        rt = await create_runtime(settings, ToolRegistry([lookup]))
        client = rt.llm
        assert client is not None
        rt.agent = Agent(client, "bench-model", rt.registry, Limits(), INSTRUCTIONS)
        # five at once: the default cap (AGENT_TOOL_CONCURRENCY, 4) would run them in two waves
        five = Agent(client, "bench-model", ToolRegistry([slow]), Limits(tool_concurrency=5), INSTRUCTIONS)
        question = [{"role": "user", "content": QUESTION}]
        bench_run = await rt.db.runs.start("bench")
        assert bench_run.id is not None
        run_id = bench_run.id

        async def in_memory() -> None:
            await rt.agent.run(question, ToolContext(http=rt.http, llm=client, trace=MemoryTrace()))

        async def db_trace() -> None:
            trace = DbTrace(rt.db, run_id)
            await rt.agent.run(question, ToolContext(http=rt.http, llm=client, trace=trace))
            await trace.flush()

        async def real_path() -> None:
            """What conversation.answer does around the agent, minus Slack."""
            async with traced_run(rt, "mention", team="T1", channel="C1", user="U1", thread_ts="1.0") as run:
                result = await rt.agent.run(question, run.ctx)
                await run.flush()  # the bot flushes the trace before it posts the answer
                run.finish("ok", error=result.stop_reason, answer_ts="1.1")

        ours = await interleaved_ms(
            {
                "floor": lambda: floor_once(client),
                "memory": in_memory,
                "dbtrace": db_trace,
                "real": real_path,
            },
            n,
        )
        sdk = await sdk_figures(python, base_url, n)

        ctx = ToolContext(http=rt.http, llm=client, trace=MemoryTrace())
        t0 = time.perf_counter()
        await five.run([{"role": "user", "content": "run five slow tools"}], ctx)
        total = (time.perf_counter() - t0) * 1000
        assert isinstance(ctx.trace, MemoryTrace)
        model_ms = sum(s.duration_ms for s in ctx.trace.steps if s.kind == "model")
        await rt.close()
    server.stdin.close()
    errors = json.loads(await server.stdout.readline())["schema_errors"]
    await server.wait()
    assert errors == [], errors

    floor, sdk_over = ours["floor"], sdk["sdk"] - sdk["floor"]

    def row(label: str, ms: float, base: float | None) -> str:
        return f"| {label} | {ms:.2f} ms | {'-' if base is None else f'{ms - base:.2f} ms'} |"

    print(f"round trip, median of {n}, paths sampled in turn (zero-latency fake model, own process):")
    print("| path | median | overhead over its floor |")
    print("|---|---:|---:|")
    print(row("floor: two bare AsyncOpenAI calls", floor, None))
    print(row("Switchboard Agent loop, in-memory trace", ours["memory"], floor))
    print(row("Switchboard loop, DbTrace on SQLite", ours["dbtrace"], floor))
    print(row("Switchboard as the bot runs it: traced_run on SQLite", ours["real"], floor))
    print(row("floor in the Agents SDK's process", sdk["floor"], None))
    print(row("OpenAI Agents SDK Runner.run", sdk["sdk"], sdk["floor"]))
    ratio = (ours["real"] - floor) / max(sdk_over, 1e-9)
    print(f"real-path overhead / SDK overhead: {ratio:.2f} (goal <= {GOAL})")
    print(
        f"5 tools x 200 ms in one turn (tool concurrency 5): tool phase {total - model_ms:.0f} ms "
        f"(goal < 300 ms), whole run {total:.0f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(serve() if args.serve else main(args.n))
