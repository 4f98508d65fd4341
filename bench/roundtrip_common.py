"""What both benchmark processes share: the question, the tool and the floor (two bare calls)."""

from __future__ import annotations

import statistics
import time
from typing import Any

QUESTION = "What's the weather in Karachi?"
TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


async def floor_once(client: Any, model: str = "bench-model") -> None:
    """The least any loop must do: ask, run the tool inline, ask again."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = await client.chat.completions.create(model=model, messages=messages, tools=[TOOL_SCHEMA])
    call = first.choices[0].message.tool_calls[0]
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"city": "Karachi", "temp_c": 30}'})
    await client.chat.completions.create(model=model, messages=messages, tools=[TOOL_SCHEMA])


async def median_ms(fn: Any, n: int, warmup: int = 20) -> float:
    return (await interleaved_ms({"only": fn}, n, warmup))["only"]


async def interleaved_ms(paths: dict[str, Any], n: int, warmup: int = 20) -> dict[str, float]:
    """Median ms of each path, sampled in turn: a load spike on a shared machine hits all alike."""
    for fn in paths.values():
        for _ in range(warmup):
            await fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(n):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            await fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}
