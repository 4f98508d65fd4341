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
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)
