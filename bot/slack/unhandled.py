"""Bolt's one error handler: deliveries no listener takes, and listeners that fail.

Slack counts every non-2xx answer to an event as a failed delivery, and disables the event
subscriptions of an app that fails more than 5% of them in an hour; over Socket Mode a non-200
answer is never acknowledged, so Slack sends it again. Bolt answers 404, with a warning, to an
event nobody listens for (im_created, member_joined_channel, ...). Here every such event gets its
200 quietly (debug level), whichever listeners exist, so a new event type can never fail a
delivery. Requests of other kinds without a listener keep Bolt's 404.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)


def is_event(body: Any) -> bool:
    return isinstance(body, dict) and (body.get("type") == "event_callback" or "event" in body)


async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    if isinstance(error, BoltUnhandledRequestError):
        if is_event(body):
            event = body.get("event")
            kind = event.get("type") if isinstance(event, dict) else None
            log.debug("acknowledged an event no listener takes: %s", str(kind)[:64])
            return BoltResponse(status=200, body="")
        log.warning("no listener takes this request (%s); answered 404", str(body.get("type"))[:64])
        return None
    log.error("a listener failed: %s", error, exc_info=error)  # what Bolt's default handler logs
    return None
