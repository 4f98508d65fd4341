"""Slack Web API calls that survive transient failures without ever doing a write twice.

Slack's error codes say whether a failed call may still have taken effect: after internal_error
and fatal_error "it's possible some aspect of the operation succeeded", and a request_timeout or
a 500 may have reached Slack too; ratelimited and service_unavailable were refused before anything
happened. So a failed call is repeated only when repeating it cannot do a thing twice: the call
was not applied, or the method is idempotent (an edit, a delete, a status). chat.postMessage is the
one non-idempotent write that is still made safe: each post carries a unique id in its message
metadata, and after a possibly-applied failure the post is looked up before it is posted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncServerErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.models.metadata import Metadata

from tools.toolkit.errors import ServiceError

log = logging.getLogger(__name__)

# What a Slack call raises when Slack refuses it, cannot be reached or is too slow, or the workspace
# has no installation (a ServiceError): what a best-effort call (a lookup, a private note) gives up on.
SLACK_FAILED: tuple[type[Exception], ...] = (
    SlackClientError,
    aiohttp.ClientError,
    TimeoutError,
    ServiceError,
)

NOT_APPLIED = {"ratelimited", "service_unavailable"}  # refused up front: a retry is a first try
MAYBE_APPLIED = {"internal_error", "fatal_error", "request_timeout"}  # may have taken effect
TRANSIENT = NOT_APPLIED | MAYBE_APPLIED
BACKOFF = (0.2, 0.6, 1.5)

# Writes whose repetition changes nothing the first call did not; reads are safe too (READ_VERBS).
IDEMPOTENT = {
    "chat.update",
    "chat.delete",
    "chat.stopStream",
    "reactions.add",
    "assistant.threads.setStatus",
    "assistant.threads.setTitle",
    "assistant.threads.setSuggestedPrompts",
    "views.publish",
    "conversations.open",
    "conversations.join",
    "files.getUploadURLExternal",
}
READ_VERBS = {"history", "replies", "info", "list", "members", "test", "getPermalink"}
# What a repeat answers when the first call had been applied: it means the work is done.
DONE_ALREADY = {
    "chat.delete": "message_not_found",
    "reactions.add": "already_reacted",
    "chat.stopStream": "message_not_in_streaming_state",
}
POST_EVENT = "switchboard_post"
CLOCK_SKEW = 60.0  # seconds our clock may be ahead of Slack's when looking a post up
LOOKUP_PAGES = 5


def method_of(fn: Callable[..., Any]) -> str:
    """`client.assistant_threads_setStatus` -> "assistant.threads.setStatus"."""
    return getattr(fn, "__name__", "").replace("_", ".")


def repeatable(method: str) -> bool:
    return method in IDEMPOTENT or method.rsplit(".", 1)[-1] in READ_VERBS


def error_of(exc: SlackApiError) -> str:
    return str((exc.response or {}).get("error", "") or "")


def not_applied(exc: SlackApiError) -> bool:
    status = getattr(exc.response, "status_code", 200)
    return error_of(exc) in NOT_APPLIED or status in (429, 503)


def server_error(exc: SlackApiError) -> bool:
    return bool(getattr(exc.response, "status_code", 200) >= 500)


def maybe_applied(exc: SlackApiError) -> bool:
    """True when Slack may have carried the failed call out (so repeating it could do it twice)."""
    status = getattr(exc.response, "status_code", 200)
    return not not_applied(exc) and (error_of(exc) in MAYBE_APPLIED or status >= 500)


async def call(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """Call a Web API method; retry a few times when that cannot duplicate anything, then raise.

    429s with Retry-After are retried inside the client by slack_sdk's handlers (bot/runtime.py),
    and so are 5xx answers of idempotent methods (not again here: a persistent 500 would be tried
    a dozen times); this covers `ok: false` answers such as internal_error, and the
    possibly-applied failures of chat.postMessage.
    """
    method = method_of(fn)
    if method == "chat.postMessage":
        return await _post(fn, kwargs)
    maybe_done = False
    for delay in (*BACKOFF, None):
        try:
            return await fn(**kwargs)
        except SlackApiError as exc:
            if maybe_done and error_of(exc) == DONE_ALREADY.get(method):
                return exc.response  # the earlier call that seemed to fail had done it
            if not (not_applied(exc) or (maybe_applied(exc) and repeatable(method))) or delay is None:
                raise
            if server_error(exc) and repeatable(method):
                raise  # the client's handler has retried this 5xx already: more would multiply
            maybe_done = maybe_done or maybe_applied(exc)
            log.warning("Slack said %s to %s; trying again in %.1f s", error_of(exc), method, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def with_post_id(metadata: Any, post_id: str) -> dict[str, Any]:
    """The caller's message metadata (if any) with our post id added to its payload."""
    if metadata is None:
        return {"event_type": POST_EVENT, "event_payload": {"post": post_id}}
    given = metadata.to_dict() if isinstance(metadata, Metadata) else dict(metadata)
    return {**given, "event_payload": {**(given.get("event_payload") or {}), "post": post_id}}


def post_id_of(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("post")


async def _post(fn: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> Any:
    """chat.postMessage, never twice: after a possibly-applied failure, find the post first."""
    post_id = uuid.uuid4().hex
    kwargs = {**kwargs, "metadata": with_post_id(kwargs.get("metadata"), post_id)}
    since = time.time() - CLOCK_SKEW
    for delay in (*BACKOFF, None):
        try:
            return await fn(**kwargs)
        except SlackApiError as exc:
            if not (not_applied(exc) or maybe_applied(exc)) or delay is None:
                raise
            log.warning("Slack said %s to chat.postMessage; looking again in %.1f s", error_of(exc), delay)
            await asyncio.sleep(delay)
            if maybe_applied(exc):
                found = await _find_or_raise(fn, kwargs, post_id, since, exc)
                if found is not None:
                    return {"ok": True, "channel": kwargs["channel"], "ts": found["ts"], "message": found}
    raise AssertionError("unreachable")


async def _find_or_raise(
    fn: Callable[..., Any], kwargs: dict[str, Any], post_id: str, since: float, failure: SlackApiError
) -> dict[str, Any] | None:
    """Our post if Slack applied it; when Slack cannot tell us, give up rather than risk a twin."""
    client = getattr(fn, "__self__", None)
    if client is None:
        raise failure
    try:
        return await find_post(client, kwargs["channel"], kwargs.get("thread_ts"), post_id, since)
    except SlackApiError as exc:
        log.warning("could not look up a post Slack may have made: %s", error_of(exc))
        raise failure from exc


async def find_post(
    client: Any, channel: str, thread_ts: str | None, post_id: str, since: float
) -> dict[str, Any] | None:
    """The message carrying `post_id`, among the thread's (or channel's) messages since `since`."""
    for message in await recent_messages(client, channel, thread_ts, since):
        if post_id_of(message) == post_id:
            return message
    return None


async def recent_messages(
    client: Any, channel: str, thread_ts: str | None, since: float | None = None
) -> list[dict[str, Any]]:
    """A thread's messages (or a channel's, newest first) with their metadata, a few pages at most.

    Slack hands message metadata only to readers that ask for it (`include_all_metadata`).
    """
    kwargs: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
    if since is not None:
        kwargs["oldest"] = f"{since:.6f}"
    fn = client.conversations_history
    if thread_ts:
        fn, kwargs["ts"] = client.conversations_replies, thread_ts
    found: list[dict[str, Any]] = []
    for _ in range(LOOKUP_PAGES):
        page = await call(fn, **kwargs)
        found += page.get("messages") or []
        kwargs["cursor"] = (page.get("response_metadata") or {}).get("next_cursor")
        if not kwargs["cursor"]:
            break
    return found


class WriteSafeServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """slack_sdk's retry of 5xx answers, except a 500 to a write that may have been applied:
    `call()` decides about those (a blind retry of chat.postMessage posts twice)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.split("?", 1)[0].rsplit("/", 1)[-1]
        if response is not None and response.status_code == 500 and not repeatable(method):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)
