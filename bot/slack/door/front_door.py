"""POST /slack/events before Bolt: body size cap, signature, parse and shape check, quiet logs;
and the thread the ack path runs on.

Bolt parses the body before it checks the signature, raises (HTTP 500) on a body that is not
JSON or not an object, and logs a rejected request's whole body. Here each of those is decided
first, cheaply; only a signed, well-formed payload reaches Bolt. Refused requests are counted
and logged at most once a minute (a flood of them is one line, not one line each); a malformed
signed payload is one INFO line naming the field, never its text.

`DoorThread` serves the public port on a thread and event loop of its own: a signed
`event_callback` is verified, deduped, recorded and acked there, so no answer work on the main
loop (model streams, tool calls, commits) can delay an ack. Every other request (slash commands,
interactivity, OAuth, probes) is passed unchanged to the main loop's server on a loopback port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from slack_bolt.response import BoltResponse

from bot.db.database import RECORDING_CONNECTIONS
from bot.db.queue.inbox import Inbox, inbox_url
from bot.db.queue.jobs import NewJob
from bot.ops.metrics import REQUESTS_REJECTED
from bot.runtime import open_database
from bot.slack.door.deliveries import Deliveries
from bot.slack.door.payloads import INTERACTIVE_TYPES, payload_problem
from bot.work.recorder import Add, Recorder

if TYPE_CHECKING:
    from bot.runtime import Runtime

T = TypeVar("T")
Forward = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

GIL_SWITCH_SECONDS = 0.001
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
        self, signing_secret: str, max_body: int, otherwise: Forward, deliveries: Deliveries | None = None
    ) -> None:
        self.secret, self.max_body = signing_secret.encode(), max_body
        self.otherwise = otherwise  # what is not an event: Bolt's dispatch, or the main loop's server
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
        return await self.otherwise(request, raw)

    def _too_large(self) -> web.Response:
        self.too_large.add()
        return web.json_response({"error": "request body too large"}, status=413)

    async def close(self, _app: web.Application | None = None) -> None:
        self.too_large.close()
        self.unsigned.close()


def bolt_dispatch(app: AsyncApp) -> Forward:
    """The main loop's handling of a checked request: Bolt's dispatch (commands, interactivity)."""

    async def dispatch(request: web.Request, raw: bytes) -> web.StreamResponse:
        headers: Any = request.headers
        bolt_request = AsyncBoltRequest(body=raw.decode("utf-8"), query=request.query_string, headers=headers)
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    return dispatch


# Hop-by-hop headers (RFC 9110 7.6.1) and the length, which aiohttp sets for the body it sends.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    )
)


class Passage:
    """Requests the door does not answer itself, passed to the main loop's server as they came
    (method, path, query, headers, body) and its response passed back, redirects included."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None

    async def forward(self, request: web.Request, raw: bytes | None = None) -> web.StreamResponse:
        if self.session is None:  # made on the door's loop, kept for its life (keep-alive)
            self.session = aiohttp.ClientSession(
                auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_read=120)
            )
        body = await request.read() if raw is None else raw
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        async with self.session.request(
            request.method, self.base_url + request.path_qs, headers=headers, data=body, allow_redirects=False
        ) as answer:
            content = await answer.read()
            back = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP)
            return web.Response(status=answer.status, body=content, headers=back)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


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


class DoorThread:
    """The public port, on a thread and event loop of its own (see the module's docstring).

    The door records with a pool of its own (`RECORDING_CONNECTIONS`, a database engine is bound
    to its loop) and wakes the main loop's claimer across threads; requests it does not answer
    go to `inner_url`, the main loop's server.
    """

    def __init__(self, rt: Runtime, host: str, port: int, inner_url: str) -> None:
        self.rt, self.host, self.port, self.inner_url = rt, host, port, inner_url
        self.main_loop = asyncio.get_running_loop()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self.store: _Store | None = None  # where it records, once serving

    async def start(self) -> int:
        """Serve; returns the bound port once the door takes requests (a failure to bind raises)."""
        self._thread = threading.Thread(target=self._main, name="front door", daemon=True)
        # The door's thread gets the interpreter at most this long after asking while the main
        # loop computes: an ack takes several hand-offs, and Python's 5 ms each put 20 mentions/s
        # at ack p99 ~100 ms (1 ms: 13-22 ms, CPU per answer unchanged; bench/load.py).
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self._thread.start()
        self.port = await asyncio.wrap_future(self._started)
        return self.port

    async def stop(self) -> None:
        """Stop taking requests; the door's last recordings are committed before it returns."""
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)

    async def on_loop(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """`work()` run on the door's loop (its pool and sessions live there)."""
        if self.loop is None:
            raise RuntimeError("the front door is not serving")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work(), self.loop))

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                log.exception("the front door stopped")
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        rt = self.rt
        self.store = store = await _recording_store(rt, self.main_loop)
        recorder = Recorder(store.add, rt.work.wake_threadsafe)
        passage = Passage(self.inner_url)
        limit = rt.settings.slack_max_body_bytes
        deliveries = Deliveries(rt, recorder, self.main_loop)
        door = FrontDoor(rt.settings.slack_signing_secret or "", limit, passage.forward, deliveries)
        web_app = web.Application(client_max_size=limit)
        web_app.router.add_post("/slack/events", door.handle)
        web_app.router.add_route("*", "/{tail:.*}", passage.forward)
        runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=5)
        rt.work.recorders.append(recorder)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else self.port
            self._started.set_result(bound)
            await self._stop.wait()
        finally:
            await runner.cleanup()  # waits for requests in flight: their recordings commit
            await door.close()
            await passage.close()
            rt.work.recorders.remove(recorder)
            await store.close()


class _Store:
    """Where the door's recorder writes, on the door's loop."""

    def __init__(self, add: Add, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.add, self.close = add, close


async def _recording_store(rt: Runtime, main_loop: asyncio.AbstractEventLoop) -> _Store:
    """SQLite: the inbox beside the file (no wait for the main file's write lock). Postgres: the
    job table, through a pool of the door's own. A database in memory exists only in the main
    loop's connections: the door records there."""
    if url := inbox_url(rt.db.url):
        inbox = Inbox(url, rt.work.marks)  # its recordings delete what the engine moved
        return _Store(inbox.add, inbox.close)
    if rt.db.dialect == "postgresql":
        db = open_database(rt.settings, pool_size=RECORDING_CONNECTIONS, max_overflow=0)

        async def reserved(jobs: list[NewJob]) -> list[tuple[int, bool]]:
            return await db.jobs.add(jobs, rt.work.reserving(jobs))  # see WorkEngine.record

        return _Store(reserved, db.close)

    async def on_main_loop(jobs: list[NewJob]) -> list[tuple[int, bool]]:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(rt.db.jobs.add(jobs), main_loop))

    async def nothing() -> None:
        return None

    return _Store(on_main_loop, nothing)
