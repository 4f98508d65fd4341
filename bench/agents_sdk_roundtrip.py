"""The same round trip through the OpenAI Agents SDK; run inside bench/.venv-agents by agent_overhead.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI
from roundtrip_common import QUESTION, floor_once, interleaved_ms


@function_tool
def lookup(city: str) -> dict:
    """Weather for a city."""
    return {"city": city, "temp_c": 30}


async def main(base_url: str, n: int) -> None:
    set_tracing_disabled(True)
    client = AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    agent = Agent(
        name="bench",
        instructions="Answer with the tools.",
        tools=[lookup],
        model=OpenAIChatCompletionsModel(model="bench-model", openai_client=client),
    )

    async def sdk() -> None:
        result = await Runner.run(agent, QUESTION)
        assert result.final_output

    print(json.dumps(await interleaved_ms({"floor": lambda: floor_once(client), "sdk": sdk}, n)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.base_url, args.n))
