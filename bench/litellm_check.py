"""A real third-party server parses our requests: the LiteLLM proxy in front of the fake model.

    python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]>=1.108'
    .venv/bin/python bench/litellm_check.py --litellm /tmp/litellm/bin/litellm

(A venv of its own: see tests/fakes/litellm_proxy.py for why it is not in the test extra.)

Starts the fake model server (with Gemini-style index-less parallel stream chunks and thought
signatures behind LiteLLM's OpenAI provider), starts `litellm --config` on a loopback port in
front of it, and runs the agent loop through the proxy, streamed and not: two parallel tool calls,
their results, the answer. Prints one line per check and the proxy's start-up time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import AsyncOpenAI

from orchestrators.agent.loop import Agent, Limits
from tests.fakes.litellm_proxy import MODEL, PROXY_KEY, find_litellm, litellm_proxy
from tests.fakes.model_quirks import Quirks
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall
from tools import ToolRegistry
from tools.current_time import current_time
from tools.toolkit.context import MemoryTrace, ToolContext


def script(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: (
        Reply(content="Karachi is four hours ahead of Berlin.")
        if body["messages"][-1]["role"] == "tool"
        else Reply(
            tool_calls=[
                ToolCall("current_time", {"timezone": "Asia/Karachi"}),
                ToolCall("current_time", {"timezone": "Europe/Berlin"}),
            ]
        )
    )


async def run_through(proxy_url: str, fake: FakeOpenAI, *, stream: bool) -> list[str]:
    """One conversation turn through the proxy; returns the problems found ([] when all is well)."""
    fake.requests.clear()
    client = AsyncOpenAI(api_key=PROXY_KEY, base_url=f"{proxy_url}/v1", max_retries=0)
    agent = Agent(client, MODEL, ToolRegistry([current_time]), Limits(llm_timeout=30))
    seen: list[str] = []

    async def sink(text: str) -> None:
        seen.append(text)

    async with aiohttp.ClientSession() as http:
        ctx = ToolContext(http=http, trace=MemoryTrace())
        result = await agent.run(
            [{"role": "user", "content": "How far ahead is Karachi?"}], ctx, sink if stream else None
        )
    await client.close()
    problems = []
    if "four hours" not in result.text:
        problems.append(f"answer: {result.text!r}")
    if len(fake.requests) != 2:
        problems.append(f"{len(fake.requests)} upstream requests, not 2")
    else:
        tool_results = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
        if len(tool_results) != 2 or "Asia/Karachi" not in tool_results[0]["content"]:
            problems.append(f"tool results upstream: {tool_results}")
        if fake.requests[0].get("tool_choice") != "auto":
            problems.append("tool_choice did not reach the upstream server")
    if stream and "".join(seen) != result.text:
        problems.append("streamed text differs from the answer")
    problems += fake.schema_errors + fake.shape_errors
    return problems


UPSTREAMS = [
    Quirks("openai"),
    Quirks("repeated-index", stream_call_index="repeated"),
    Quirks("gemini-like", stream_call_index="missing", thought_signatures=True),
]


async def check(executable: str, upstream: Quirks) -> tuple[float, dict[str, list[str]]]:
    """The proxy in front of a fake upstream behaving like `upstream`."""
    async with FakeOpenAI(upstream) as fake:
        script(fake)
        async with litellm_proxy(executable, fake.base_url) as proxy:
            outcomes = {
                "non-streamed": await run_through(proxy.url, fake, stream=False),
                "streamed": await run_through(proxy.url, fake, stream=True),
            }
        return proxy.started_in, outcomes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--litellm", default=find_litellm() or "litellm")
    executable = parser.parse_args().litellm
    failed = False
    for upstream in UPSTREAMS:
        started_in, outcomes = asyncio.run(check(executable, upstream))
        for name, problems in outcomes.items():
            failed |= bool(problems)
            verdict = "ok" if not problems else "FAILED: " + "; ".join(problems)
            print(f"upstream {upstream.name}, {name}: {verdict} (proxy ready after {started_in:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
