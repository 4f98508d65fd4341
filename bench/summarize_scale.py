"""/summarize at scale: 1,000 / 10,000 / 50,000 seeded messages, zero-latency fake model.

Run by hand:  .venv/bin/python bench/summarize_scale.py [--sizes 1000 10000 50000]
Runs once with a budget large enough to cover everything (to show cost grows linearly) and once
with the default SUMMARIZE_TOKEN_BUDGET (to show the cap). Reports wall time, model calls,
prompt tokens sent, and those tokens over the raw messages' tokens (both estimated as characters
/ 4). Goals: cost grows linearly, prompt tokens at most 1.3x
the raw text, 10,000 messages in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from orchestrators.workflows.channel_summary import summarize_channel  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply  # noqa: E402
from tests.fakes.slack_api import FakeSlack  # noqa: E402
from tools.toolkit.context import MemoryTrace, ToolContext, ToolSettings  # noqa: E402

TEXTS = [
    "Deployed build {i} to staging; smoke tests are green.",
    "Can someone review PR {i}? It touches the billing retry logic.",
    "Customer ticket {i}: export to CSV times out for large workspaces.",
    "Standup note {i}: finishing the migration, blocked on the schema review.",
]


async def one(size: int, budget: int) -> dict[str, float]:
    slack, llm = FakeSlack(), FakeOpenAI()
    await slack.start()
    await llm.start()
    llm.default = Reply(content="- summary of this part: deploys, reviews, tickets, migration")
    for uid, name in (("U1", "alice"), ("U2", "bob"), ("U3", "carol"), ("U4", "dave")):
        slack.add_user(uid, name)
    slack.add_channel("C1", "general", members=("U1", "U2", "U3", "U4"))
    start_ts = time.time() - size * 5 - 60
    channel = slack.channels["C1"]
    for i in range(size):
        channel.messages.append(
            {
                "type": "message",
                "user": f"U{i % 4 + 1}",
                "ts": f"{start_ts + i * 5:.6f}",
                "text": TEXTS[i % len(TEXTS)].format(i=i),
            }
        )
    raw_tokens = sum(len(m["text"]) for m in channel.messages) / 4
    async with aiohttp.ClientSession() as http:
        ctx = ToolContext(
            http=http,
            settings=ToolSettings(model="bench-model", summarize_token_budget=budget),
            user_id="U1",
            trace=MemoryTrace(),
            slack=AsyncWebClient(token="xoxb-bench", base_url=slack.api_url),
            llm=AsyncOpenAI(api_key="sk-bench", base_url=llm.base_url, max_retries=0),
        )
        began = time.perf_counter()
        reply = await summarize_channel(ctx, "C1", "general", start_ts - 1)
        wall = time.perf_counter() - began
    await slack.stop()
    await llm.stop()
    assert f"{size} messages" in reply.text, reply.text[:200]
    return {
        "size": size,
        "wall": wall,
        "calls": ctx.usage.llm_calls,
        "prompt": ctx.usage.prompt_tokens,
        "raw": raw_tokens,
        "pages": len(slack.calls_to("conversations.history")),
        "covered": "too long" not in reply.text,
    }


async def main(sizes: list[int], budgets: list[int]) -> None:
    print(
        "| messages | budget | wall time | pages read | model calls | prompt tokens | raw tokens "
        "| ratio | covered |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for budget in budgets:
        for size in sizes:
            r = await one(size, budget)
            covered = "all" if r["covered"] else "newest part"
            print(
                f"| {r['size']:,} | {budget:,} | {r['wall']:.2f} s | {r['pages']} | {r['calls']} | "
                f"{r['prompt']:,} | {r['raw']:,.0f} | {r['prompt'] / r['raw']:.2f}x | {covered} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[10_000_000, 200_000],
        help="prompt-token budgets per /summarize (200,000 is the default setting)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.budgets))
