"""POST /slack/events before Bolt: body size cap, signature, parse and shape check, quiet logs.

Bolt parses the body before it checks the signature, raises (HTTP 500) on a body that is not
JSON or not an object, and logs a rejected request's whole body. Here each of those is decided
first, cheaply; only a signed, well-formed payload reaches Bolt. Refused requests are counted
and logged at most once a minute (a flood of them is one line, not one line each); a malformed
signed payload is one INFO line naming the field, never its text.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse

from bot.metrics import REQUESTS_REJECTED
from bot.slack.deliveries import Deliveries
from bot.slack.payloads import INTERACTIVE_TYPES, payload_problem

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = 300  # seconds; Slack's own rule against replayed requests
REJECTION_LOG_SECONDS = 60.0


def is_signed(raw: bytes, timestamp: str, signature: str, secret: bytes, now: float) -> bool:
    """Slack's v0 signature over the raw bytes (which need not be valid UTF-8 to be checked)."""
    if not (timestamp.isdigit() and len(timestamp) < 12) or abs(now - int(timestamp)) > MAX_CLOCK_SKEW:
        return False
    mac = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={mac}".encode(), signature.encode("utf-8", "replace"))


class Rejections:
    """Requests refused for one reason: counted (also in /metrics), logged at most once per interval.

    The first refusal after a quiet interval is logged at once; the ones that follow within the
    interval are logged together when it ends, or when the server stops, so no count is lost.
    """

    def __init__(self, reason: str, label: str, interval: float = REJECTION_LOG_SECONDS) -> None:
        self.reason, self.interval = reason, interval
        self.metric = REQUESTS_REJECTED.labels(reason=label)
        self.pending = 0
        self.timer: asyncio.TimerHandle | None = None

    def add(self) -> None:
        self.metric.inc()
        self.pending += 1
        if self.timer is None:
            self.flush()
            self.timer = asyncio.get_running_loop().call_later(self.interval, self._interval_over)

    def _interval_over(self) -> None:
        self.timer = None
        if self.pending:
            self.flush()
            self.timer = asyncio.get_running_loop().call_later(self.interval, self._interval_over)

    def flush(self) -> None:
        if self.pending:
            log.warning(
                "rejected %d request%s to /slack/events: %s (at most one such line every %.0f s)",
                self.pending,
                "" if self.pending == 1 else "s",
                self.reason,
                self.interval,
            )
            self.pending = 0

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flush()


class FrontDoor:
    """The aiohttp handler of POST /slack/events; `close` (at server cleanup) logs the last counts."""

    def __init__(
        self, app: AsyncApp, signing_secret: str, max_body: int, deliveries: Deliveries | None = None
    ) -> None:
        self.app, self.secret, self.max_body = app, signing_secret.encode(), max_body
        self.deliveries = deliveries  # events are recorded and acked here, dispatched from their job
        self.too_large = Rejections(f"body over {max_body} bytes", "too_large")
        self.unsigned = Rejections("bad or missing signature", "signature")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > self.max_body:
            return self._too_large()
        try:
            raw = await request.read()  # the application's client_max_size stops chunked bodies
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not is_signed(raw, timestamp, signature, self.secret, time.time()):
            self.unsigned.add()
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            text = raw.decode("utf-8")
            body = parse_body(text, request.content_type)
        except (ValueError, RecursionError) as exc:
            log.info("ignored a signed request whose body does not parse (%s)", type(exc).__name__)
            return web.Response(status=200)
        if problem := payload_problem(body):
            log.info("ignored a malformed Slack payload: %s", problem)
            return web.Response(status=200)
        if self.deliveries is not None and body.get("type") == "event_callback":
            await self.deliveries.record(body, raw)  # no Bolt dispatch on the ack path
            return web.Response(status=200)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    def _too_large(self) -> web.Response:
        self.too_large.add()
        return web.json_response({"error": "request body too large"}, status=413)

    async def close(self, _app: web.Application | None = None) -> None:
        self.too_large.close()
        self.unsigned.close()


async def validate_payload(body: dict[str, Any], next: Any) -> BoltResponse | None:
    """The same shape check as a Bolt middleware, for payloads that arrive over Socket Mode."""
    if problem := payload_problem(body):
        log.info("ignored a malformed Slack payload: %s", problem)
        return BoltResponse(status=200, body="")
    await next()
    return None


def kind_of(body: Any) -> str:
    """A payload's kind for a log line: from a fixed list, so no sender-chosen text is logged."""
    if not isinstance(body, dict):
        return "unreadable"
    if "command" in body:
        return "slash command"
    kind = body.get("type")
    return kind if kind in (*INTERACTIVE_TYPES, "event_callback", "url_verification") else "unknown"


async def last_word(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    """Bolt's error handler, for what passed the shape check and still found no happy end.

    A payload no listener takes is acknowledged (an event quietly, at debug level): Slack counts
    every non-2xx delivery against the app and disables the event subscriptions of one that fails
    more than 5% in an hour; over Socket Mode an unacknowledged envelope is sent again.

    A listener's exception is logged with its traceback; an interactive payload still gets 200
    (Slack never retries those, and a 5xx shows the person an error), while events and commands
    keep Bolt's 500, so Slack redelivers an event whose turn could not be recorded.
    """
    kind = kind_of(body)
    if isinstance(error, BoltUnhandledRequestError):
        event = body.get("event") if isinstance(body, dict) else None
        if isinstance(event, dict):  # im_created, member_joined_channel, ...: quietly (issue 24)
            log.debug("acknowledged an event no listener takes: %s", str(event.get("type"))[:64])
        else:
            log.info("no listener takes this %s payload; acknowledged", kind)
        return BoltResponse(status=200, body="")
    log.error("a listener failed on a %s payload (%s)", kind, type(error).__name__, exc_info=error)
    return BoltResponse(status=200, body="") if kind in INTERACTIVE_TYPES else None
