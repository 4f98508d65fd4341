"""Slack Web API calls that survive transient failures without ever posting twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

# Errors after which Slack did not apply the call, so trying again cannot duplicate it.
TRANSIENT = {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
BACKOFF = (0.2, 0.6, 1.5)


async def call(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """Call a Web API method; retry a few times on transient errors, then raise.

    429s with Retry-After and 5xx answers are already retried inside the client by slack_sdk's
    retry handlers (bot/runtime.py); this covers `ok: false` answers such as internal_error.
    """
    for delay in (*BACKOFF, None):
        try:
            return await fn(**kwargs)
        except SlackApiError as exc:
            error = (exc.response or {}).get("error", "")
            if error not in TRANSIENT or delay is None:
                raise
            log.warning("Slack said %s; trying again in %.1f s", error, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
