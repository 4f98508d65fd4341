"""POST /slack/events before Bolt: body size cap, signature, parse and shape check, one log line each.

Bolt parses the body before it checks the signature, raises (HTTP 500) on a body that is not
JSON or not an object, and logs a rejected request's whole body. Here each of those is decided
first, cheaply, with one short line in the log; only a signed, well-formed payload reaches Bolt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse

from bot.slack.payloads import payload_problem

log = logging.getLogger(__name__)

Handler = Any  # Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_CLOCK_SKEW = 300  # seconds; Slack's own rule against replayed requests


def is_signed(raw: bytes, timestamp: str, signature: str, secret: bytes, now: float) -> bool:
    """Slack's v0 signature over the raw bytes (which need not be valid UTF-8 to be checked)."""
    if not (timestamp.isdigit() and len(timestamp) < 12) or abs(now - int(timestamp)) > MAX_CLOCK_SKEW:
        return False
    mac = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={mac}".encode(), signature.encode("utf-8", "replace"))


def too_large(size: int | None, limit: int) -> web.Response:
    log.warning("rejected a request to /slack/events: body over %d bytes (%s)", limit, size or "chunked")
    return web.json_response({"error": "request body too large"}, status=413)


def events_handler(app: AsyncApp, signing_secret: str, max_body: int) -> Handler:
    secret = signing_secret.encode()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body:
            return too_large(request.content_length, max_body)
        try:
            raw = await request.read()  # the application's client_max_size stops chunked bodies
        except web.HTTPRequestEntityTooLarge:
            return too_large(None, max_body)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not is_signed(raw, timestamp, signature, secret, time.time()):
            log.warning("rejected a request to /slack/events: bad or missing signature (%d bytes)", len(raw))
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            text = raw.decode("utf-8")
            body = parse_body(text, request.content_type)
        except (ValueError, RecursionError) as exc:
            log.warning("ignored a signed request whose body does not parse (%s)", type(exc).__name__)
            return web.Response(status=200)
        if problem := payload_problem(body):
            log.warning("ignored a malformed Slack payload: %s", problem)
            return web.Response(status=200)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    return handle


async def validate_payload(body: dict[str, Any], next: Any) -> BoltResponse | None:
    """The same shape check as a Bolt middleware, for payloads that arrive over Socket Mode."""
    if problem := payload_problem(body):
        log.warning("ignored a malformed Slack payload: %s", problem)
        return BoltResponse(status=200, body="")
    await next()
    return None
