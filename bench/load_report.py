"""bench/load.py's figures: ack summaries, the issue's goals, and the lines it prints."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ack_latency import percentile

SLOW_ACK_MS = 3000  # Slack gives up on a delivery after 3 s and retries it


def ack_summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": statistics.median(values), "p99": percentile(values, 99), "max": max(values)}


def rounded(summary: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 1) for k, v in summary.items()}


def within(phase: dict[str, Any], above_ms: float) -> bool | None:
    """Bot ack p99 at most 3x the floor's, or at most `above_ms` above it."""
    bot, floor = phase["ack_ms"]["bot"]["p99"], phase["ack_ms"]["floor"]["p99"]
    if bot is None or floor is None:
        return None
    return bool(bot <= max(3 * floor, floor + above_ms))


def goals(phases: list[dict[str, Any]]) -> dict[str, Any]:
    at20 = next((p for p in phases if p["rate"] == 20), None)
    burst = next((p for p in phases if p["rate"] is None), None)
    fine = [
        p["rate"]
        for p in phases
        if p["rate"] is not None
        and p["answers_on_time"] == p["deliveries"]
        and p["ack_ms"]["bot"]["p99"] is not None
        and p["ack_ms"]["bot"]["p99"] < 1000
    ]
    return {
        "ack_p99_at_20_per_s_within_3x_or_50ms": within(at20, 50) if at20 else None,
        "ack_p99_burst_within_3x_or_100ms": within(burst, 100) if burst else None,
        "highest_sustained_rate_on_time_and_p99_under_1s": max(fine, default=None),
    }


def show(phase: dict[str, Any]) -> None:
    bot, floor, ratio = phase["ack_ms"]["bot"], phase["ack_ms"]["floor"], phase["ack_ratio"]
    print(
        f"{phase['phase']:>8}: {phase['deliveries']} mentions, answered in {phase['seconds']} s | ack ms bot "
        f"p50 {bot['p50']} p99 {bot['p99']} max {bot['max']}, floor p50 {floor['p50']} p99 {floor['p99']}, "
        f"ratio p50 {ratio['p50']} p99 {ratio['p99']}, over 3 s {phase['acks_over_3s']}"
    )
    print(
        f"{'':>10}answers {phase['answers']}, on time {phase['answers_on_time']} (s p50/p99 "
        f"{(phase['answer_s'] or {}).get('p50')}/{(phase['answer_s'] or {}).get('p99')}) | CPU "
        f"{phase['cpu_seconds_per_answer']} s/answer | peak RSS {phase['peak_rss_mb']} MB | Slack "
        f"connections {phase['slack_connections']} | DB per answer: {phase['db_transactions_per_answer']} "
        f"transactions, {phase['db_statements_per_answer']} statements {phase['db']}"
    )
