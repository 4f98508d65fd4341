"""Requests shaped and signed the way Slack sends them to the app under test.

Plain functions: build an event, slash command or interactivity body, then `post_signed()` it to
the app's HTTP endpoint, with the v0 signature Bolt verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any, NamedTuple
from urllib.parse import urlencode

import aiohttp

_ids = itertools.count(1)
_ts = itertools.count(1)


class Answer(NamedTuple):
    """What the app answered; unpacks as `status, text = await post_signed(...)`."""

    status: int
    text: str


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature headers: v0 HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def _ts_now() -> str:
    return f"{int(time.time())}.{next(_ts):06d}"


def event_body(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team: str = "T1",
    api_app_id: str = "A1",
    authorizations_user: str = "UBOT",
) -> bytes:
    """An Events API `event_callback` envelope with a fresh event_id (the key retries dedupe on)."""
    envelope = {
        "token": "legacy-verification-token",
        "team_id": team,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": authorizations_user,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(envelope).encode()


def _message(
    kind: str, text: str, channel: str, user: str, ts: str | None, thread_ts: str | None, channel_type: str
) -> dict[str, Any]:
    ts = ts or _ts_now()
    event = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": "T1",
        "channel_type": channel_type,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if kind == "app_mention":
        event.pop("channel_type")
    return event


def mention(
    text: str, *, channel: str = "C1", user: str = "U1", ts: str | None = None, thread_ts: str | None = None
) -> dict[str, Any]:
    """An `app_mention` event (these carry no channel_type)."""
    return _message("app_mention", text, channel, user, ts, thread_ts, "channel")


def dm(
    text: str, *, channel: str = "D1", user: str = "U1", ts: str | None = None, thread_ts: str | None = None
) -> dict[str, Any]:
    """A `message` event in a direct message (channel_type "im")."""
    return _message("message", text, channel, user, ts, thread_ts, "im")


def thread_message(
    text: str, *, channel: str = "C1", user: str = "U1", ts: str | None = None, thread_ts: str | None = None
) -> dict[str, Any]:
    """A plain `message` event in a public channel, e.g. a reply in a thread the bot is in."""
    return _message("message", text, channel, user, ts, thread_ts, "channel")


def command_body(
    command: str,
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    response_url: str = "http://127.0.0.1:9/response/none",
    team: str = "T1",
    trigger_id: str | None = None,
    channel_name: str = "general",
    thread_ts: str | None = None,
) -> bytes:
    """A slash command POST body (form-urlencoded), as Slack sends it (thread_ts: used in a thread)."""
    form = {
        "token": "legacy",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": trigger_id or f"trig.{next(_ids)}",
        "is_enterprise_install": "false",
    }
    if thread_ts:
        form["thread_ts"] = thread_ts
    return urlencode(form).encode()


def block_actions_body(
    action: dict[str, Any],
    *,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str = "1.1",
    thread_ts: str | None = None,
    response_url: str | None = None,
    team: str = "T1",
) -> bytes:
    """An interactivity POST body: form field `payload` holding a block_actions JSON payload."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "user": "UBOT", "bot_id": "BBOT"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "team": {"id": team, "domain": "fake"},
        "channel": {"id": channel, "name": "general"},
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
            **({"thread_ts": thread_ts} if thread_ts else {}),
        },
        "message": message,
        "trigger_id": f"trig.{next(_ids)}",
        "response_url": response_url or "http://127.0.0.1:9/response/none",
        "state": {"values": {}},
        "actions": [{"action_ts": str(time.time()), "block_id": "b1", **action}],
        "is_enterprise_install": False,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    secret: str,
    *,
    content_type: str,
    retry_num: int | None = None,
    timestamp: int | None = None,
) -> Answer:
    """POST `body` signed with `secret`; a retry_num adds Slack's retry headers."""
    headers = sign(secret, body, timestamp) | {"Content-Type": content_type}
    if retry_num is not None:
        headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
    async with session.post(url, data=body, headers=headers) as response:
        return Answer(response.status, await response.text())
