"""Model prices from a published, dated table (bot/controls/pricing/SOURCES.md says which), in USD per
million tokens (input, output); MODEL_PRICES overrides and extends them (bot/settings.py)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

TABLE = Path(__file__).parent / "pricing" / "model_prices.json"
PER_MILLION = 1_000_000


@cache
def published_prices() -> dict[str, tuple[float, float]]:
    """LiteLLM's per-token rates of the vendored models, as (input, output) per million tokens."""
    table = json.loads(TABLE.read_text())
    return {
        model: (
            round(entry["input_cost_per_token"] * PER_MILLION, 6),
            round(entry["output_cost_per_token"] * PER_MILLION, 6),
        )
        for model, entry in table.items()
        if "input_cost_per_token" in entry and "output_cost_per_token" in entry
    }
