"""Prometheus metrics, served at /metrics: what operators graph and alert on.

Counted where the fact is recorded (runs and steps in bot/db/queries/runs.py, dedupe in
bot/work/recorder.py, digests in bot/db/workspaces/digest_schedules.py, Slack errors in the Web API
client, database statements and transactions in bot/db/counting.py), so every front door is
counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)

RUNS = Counter("switchboard_runs", "Finished runs", ["trigger", "status"])
MODEL_SECONDS = Histogram(
    "switchboard_model_call_seconds", "Model call latency", ["model"], buckets=LATENCY_BUCKETS
)
TOOL_SECONDS = Histogram(
    "switchboard_tool_call_seconds", "Tool call latency", ["tool"], buckets=LATENCY_BUCKETS
)
TOKENS = Counter("switchboard_tokens", "Model tokens spent", ["kind"])
SLACK_ERRORS = Counter("switchboard_slack_api_errors", "Slack Web API calls that failed", ["method", "error"])
EVENTS_DEDUPLICATED = Counter("switchboard_events_deduplicated", "Slack deliveries dropped as replays")
DIGESTS_POSTED = Counter("switchboard_digests_posted", "Scheduled digests posted")
REQUESTS_REJECTED = Counter(
    "switchboard_requests_rejected", "Requests to /slack/events refused before Bolt", ["reason"]
)
# Counted by bot/db/counting.py for every engine: what an answer costs the database.
DB_STATEMENTS = Counter("switchboard_db_statements", "SQL statements the database ran", ["kind"])
DB_TRANSACTIONS = Counter(
    "switchboard_db_transactions",
    "Database transactions: begun, committed, rolled back, and writes committed on their own",
    ["event"],
)


def run_finished(trigger: str, status: str) -> None:
    # Slash-command triggers are a fixed set; anything else is grouped so labels stay few.
    RUNS.labels(trigger=trigger[:40], status=status).inc()


def step_recorded(step: Mapping[str, Any]) -> None:
    """One traced step (a row of the step table) into the latency histograms and token counters."""
    kind, name, seconds = (
        step.get("kind"),
        str(step.get("name", ""))[:100],
        (step.get("duration_ms") or 0) / 1000,
    )
    if kind == "model":
        MODEL_SECONDS.labels(model=name).observe(seconds)
        TOKENS.labels(kind="prompt").inc(step.get("prompt_tokens") or 0)
        TOKENS.labels(kind="completion").inc(step.get("completion_tokens") or 0)
    elif kind == "tool":
        TOOL_SECONDS.labels(tool=name).observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class CountingWebClient(AsyncWebClient):
    """The Slack Web API client, counting failed calls by method and error."""

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            SLACK_ERRORS.labels(method=api_method, error=str(error or "unknown")[:60]).inc()
            raise
        except Exception as exc:  # connection errors and timeouts, after the retry handlers
            SLACK_ERRORS.labels(method=api_method, error=type(exc).__name__).inc()
            raise
