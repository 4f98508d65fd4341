"""A fake Slack Web API that keeps workspace state (users, channels, messages) and records calls."""

from __future__ import annotations

import asyncio
import bisect
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

TEXT_LIMIT = 40_000
MARKDOWN_LIMIT = 12_000
BLOCK_LIMIT = 50


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class Channel:
    id: str
    name: str
    members: set[str]
    is_private: bool = False
    is_im: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)  # top level, oldest first
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # parent ts -> replies


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None
    times: int


def _page(items: list[Any], params: dict[str, Any], default: int = 100) -> tuple[list[Any], str]:
    limit = min(int(params.get("limit") or default), 999) or default
    start = int(params.get("cursor") or 0)
    chunk = items[start : start + limit]
    nxt = str(start + limit) if start + limit < len(items) else ""
    return chunk, nxt


class FakeSlack(FakeServer):
    """POST /api/{method}; state lives in `users`, `channels`; every call lands in `calls`."""

    def __init__(self) -> None:
        super().__init__()
        self.team = "T1"
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []
        self.failures: dict[str, list[Failure]] = {}
        self.streams: dict[str, dict[str, Any]] = {}
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_acks: list[dict[str, Any]] = []
        self._clock = 1_700_000_000.0
        self.add_user("UBOT", "switchboard", is_bot=True)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket", self._socket)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # --- setup --------------------------------------------------------------------------------
    def add_user(self, id: str, name: str, tz: str = "UTC", is_admin: bool = False, is_bot: bool = False):
        self.users[id] = {
            "id": id,
            "name": name,
            "real_name": name.title(),
            "tz": tz,
            "tz_offset": 0,
            "is_admin": is_admin,
            "is_bot": is_bot,
            "deleted": False,
            "team_id": self.team,
            "profile": {"display_name": name, "real_name": name.title()},
        }

    def add_channel(self, id: str, name: str, members=(), is_private=False, is_im=False, bot_member=True):
        people = set(members) | ({"UBOT"} if bot_member else set())
        self.channels[id] = Channel(id, name, people, is_private, is_im)
        return self.channels[id]

    def next_ts(self) -> str:
        self._clock += 1
        return f"{self._clock:.6f}"

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> str:
        ts = ts or self.next_ts()
        msg = {"type": "message", "user": user, "text": text, "ts": ts, **extra}
        self._store(self.channels[channel], msg, thread_ts)
        return ts

    def seed_messages(
        self,
        channel: str,
        n: int,
        users=("U1", "U2"),
        start_ts: float = 1_600_000_000.0,
        step: float = 60.0,
        text: str = "message number {i} about the project",
    ) -> list[str]:
        ch = self.channels[channel]
        stamps = []
        for i in range(n):
            ts = f"{start_ts + i * step:.6f}"
            ch.messages.append(
                {"type": "message", "user": users[i % len(users)], "text": text.format(i=i), "ts": ts}
            )
            stamps.append(ts)
        ch.messages.sort(key=lambda m: float(m["ts"]))
        return stamps

    def _store(self, ch: Channel, msg: dict[str, Any], thread_ts: str | None) -> None:
        if thread_ts and thread_ts != msg["ts"]:
            msg["thread_ts"] = thread_ts
            ch.replies.setdefault(thread_ts, []).append(msg)
            for parent in ch.messages:
                if parent["ts"] == thread_ts:
                    parent["thread_ts"] = thread_ts
                    parent["reply_count"] = len(ch.replies[thread_ts])
        else:
            keys = [float(m["ts"]) for m in ch.messages]
            ch.messages.insert(bisect.bisect(keys, float(msg["ts"])), msg)

    # --- inspection ---------------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posted(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (oldest first), as stored now (updates applied)."""
        out = []
        for ch in self.channels.values():
            if channel and ch.id != channel:
                continue
            every = ch.messages + [r for rs in ch.replies.values() for r in rs]
            for m in every:
                if m.get("bot_id") == "BBOT" and (thread_ts is None or m.get("thread_ts") == thread_ts):
                    out.append(m)
        return sorted(out, key=lambda m: float(m["ts"]))

    def find(self, channel: str, ts: str) -> dict[str, Any] | None:
        ch = self.channels[channel]
        for m in ch.messages + [r for rs in ch.replies.values() for r in rs]:
            if m["ts"] == ts:
                return m
        return None

    async def wait_for(self, predicate, timeout: float = 5.0, what: str = "condition") -> Any:
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate()):
                    await asyncio.sleep(0.01)
                return result
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise AssertionError(f"timed out waiting for {what}; calls so far: {seen}") from None

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        await self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout, f"{count} x {method}")
        return self.calls_to(method)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str = "internal_error",
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        self.failures.setdefault(method, []).append(Failure(status, error, retry_after, times))

    def response_url(self, name: str = "cmd") -> str:
        return f"{self.url}/response/{name}"

    # --- Socket Mode -----------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(message.data))
        return ws

    async def socket_send(self, body: dict[str, Any], kind: str = "events_api", retry: int = 0) -> str:
        """Deliver a payload over Socket Mode the way Slack does; returns its envelope id."""
        envelope_id = f"env-{len(self.socket_acks)}-{self.next_ts()}"
        await self.wait_for(lambda: self.sockets, what="a Socket Mode connection")
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": body,
                "accepts_response_payload": False,
                "retry_attempt": retry,
                "retry_reason": "timeout" if retry else "",
            }
        )
        return envelope_id

    def m_apps_connections_open(self, p):
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    # --- HTTP -------------------------------------------------------------------------------
    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({**body, "_name": request.match_info["name"]})
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params |= await request.json()
            else:
                params |= dict(await request.post())
        for key in ("blocks", "prompts", "metadata", "chunks"):
            if isinstance(params.get(key), str) and params[key][:1] in "[{":
                params[key] = json.loads(params[key])
        self.calls.append(Call(method, params))
        if not request.headers.get("Authorization", "").startswith(("Bearer xox", "Bearer xapp")):
            return web.json_response({"ok": False, "error": "not_authed"})
        queue = self.failures.get(method)
        if queue:
            failure = queue[0]
            failure.times -= 1
            if failure.times <= 0:
                queue.pop(0)
            if failure.status == 429:
                headers = {"Retry-After": str(failure.retry_after or 1)}
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
            if failure.status >= 500:
                return web.json_response({"ok": False, "error": failure.error}, status=failure.status)
            return web.json_response({"ok": False, "error": failure.error})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            result = handler(params)
        except SlackFault as fault:
            return web.json_response({"ok": False, "error": str(fault)})
        return web.json_response({"ok": True, **result})

    # --- methods ------------------------------------------------------------------------------
    def _channel(self, params: dict[str, Any], key: str = "channel") -> Channel:
        ch = self.channels.get(params.get(key, ""))
        if ch is None:
            raise SlackFault("channel_not_found")
        return ch

    def _writable(self, params: dict[str, Any]) -> Channel:
        ch = self._channel(params)
        if "UBOT" not in ch.members:
            raise SlackFault("not_in_channel")
        _check_content(params)
        return ch

    def m_auth_test(self, p):
        return {
            "user_id": "UBOT",
            "bot_id": "BBOT",
            "team_id": self.team,
            "team": "Fake",
            "user": "switchboard",
        }

    def m_chat_postMessage(self, p):
        ch = self._writable(p)
        ts = self.next_ts()
        msg = {
            "type": "message",
            "bot_id": "BBOT",
            "user": "UBOT",
            "ts": ts,
            "text": p.get("text") or "",
            "blocks": p.get("blocks"),
            "markdown_text": p.get("markdown_text"),
            "metadata": p.get("metadata"),
        }
        if p.get("markdown_text") and not p.get("text"):
            msg["text"] = p["markdown_text"]
        self._store(ch, msg, p.get("thread_ts"))
        return {"channel": ch.id, "ts": ts, "message": msg}

    def m_chat_update(self, p):
        ch = self._channel(p)
        _check_content(p)
        msg = self.find(ch.id, p.get("ts", ""))
        if msg is None:
            raise SlackFault("message_not_found")
        for key in ("text", "blocks", "markdown_text"):
            if key in p:
                msg[key] = p[key]
        if p.get("markdown_text") and not p.get("text"):
            msg["text"] = p["markdown_text"]
        msg["edited"] = True
        return {"channel": ch.id, "ts": msg["ts"], "text": msg["text"]}

    def m_chat_delete(self, p):
        ch = self._channel(p)
        msg = self.find(ch.id, p.get("ts", ""))
        if msg is None:
            raise SlackFault("message_not_found")
        for bucket in [ch.messages, *ch.replies.values()]:
            if msg in bucket:
                bucket.remove(msg)
        return {"channel": ch.id, "ts": p["ts"]}

    def m_chat_postEphemeral(self, p):
        self._channel(p)
        _check_content(p)
        return {"message_ts": self.next_ts()}

    def m_chat_getPermalink(self, p):
        stamp = p.get("message_ts", "").replace(".", "")
        return {"permalink": f"https://fake.slack.com/archives/{p.get('channel')}/p{stamp}"}

    def m_chat_startStream(self, p):
        ch = self._writable(p)
        if not p.get("thread_ts"):
            raise SlackFault("invalid_arguments")
        ts = self.next_ts()
        msg = {
            "type": "message",
            "bot_id": "BBOT",
            "user": "UBOT",
            "ts": ts,
            "text": p.get("markdown_text") or "",
            "streaming": True,
        }
        self._store(ch, msg, p["thread_ts"])
        self.streams[ts] = msg
        return {"channel": ch.id, "ts": ts}

    def m_chat_appendStream(self, p):
        msg = self.streams.get(p.get("ts", ""))
        if msg is None or not msg.get("streaming"):
            raise SlackFault("message_not_in_streaming_state")
        msg["text"] += p.get("markdown_text") or ""
        if len(msg["text"]) > TEXT_LIMIT:
            raise SlackFault("msg_too_long")
        return {"channel": p.get("channel"), "ts": msg["ts"]}

    def m_chat_stopStream(self, p):
        msg = self.streams.get(p.get("ts", ""))
        if msg is None or not msg.get("streaming"):
            raise SlackFault("message_not_in_streaming_state")
        msg["text"] += p.get("markdown_text") or ""
        msg["streaming"] = False
        if p.get("blocks"):
            msg["blocks"] = p["blocks"]
        return {"channel": p.get("channel"), "ts": msg["ts"], "message": msg}

    def m_assistant_threads_setStatus(self, p):
        return {}

    def m_assistant_threads_setSuggestedPrompts(self, p):
        return {}

    def m_assistant_threads_setTitle(self, p):
        return {}

    def m_reactions_add(self, p):
        return {}

    def _readable(self, p) -> Channel:
        ch = self._channel(p)
        if "UBOT" not in ch.members:
            raise SlackFault("not_in_channel")
        return ch

    def m_conversations_history(self, p):
        ch = self._readable(p)
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 9e12)
        inclusive = str(p.get("inclusive", "")).lower() in ("1", "true")
        keys = [float(m["ts"]) for m in ch.messages]
        lo = bisect.bisect_left(keys, oldest) if inclusive else bisect.bisect_right(keys, oldest)
        hi = bisect.bisect_right(keys, latest) if inclusive else bisect.bisect_left(keys, latest)
        newest_first = ch.messages[lo:hi][::-1]
        page, nxt = _page(newest_first, p)
        return {"messages": page, "has_more": bool(nxt), "response_metadata": {"next_cursor": nxt}}

    def m_conversations_replies(self, p):
        ch = self._readable(p)
        parent = self.find(ch.id, p.get("ts", ""))
        if parent is None:
            raise SlackFault("thread_not_found")
        items = [parent, *ch.replies.get(parent["ts"], [])]
        page, nxt = _page(items, p)
        return {"messages": page, "has_more": bool(nxt), "response_metadata": {"next_cursor": nxt}}

    def m_conversations_members(self, p):
        ch = self._channel(p)
        page, nxt = _page(sorted(ch.members), p)
        return {"members": page, "response_metadata": {"next_cursor": nxt}}

    def _info(self, ch: Channel) -> dict[str, Any]:
        return {
            "id": ch.id,
            "name": ch.name,
            "is_private": ch.is_private,
            "is_im": ch.is_im,
            "is_channel": not ch.is_private and not ch.is_im,
            "is_member": "UBOT" in ch.members,
        }

    def m_conversations_info(self, p):
        return {"channel": self._info(self._channel(p))}

    def m_conversations_list(self, p):
        page, nxt = _page([self._info(c) for c in self.channels.values() if not c.is_im], p)
        return {"channels": page, "response_metadata": {"next_cursor": nxt}}

    def m_conversations_join(self, p):
        ch = self._channel(p)
        if ch.is_private:
            raise SlackFault("method_not_supported_for_channel_type")
        ch.members.add("UBOT")
        return {"channel": self._info(ch)}

    def m_conversations_open(self, p):
        users = [u for u in str(p.get("users", "")).split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            raise SlackFault("user_not_found")
        dm_id = f"D{users[0]}"
        if dm_id not in self.channels:
            self.add_channel(dm_id, f"dm-{users[0]}", members=(users[0],), is_im=True)
        return {"channel": {"id": dm_id}}

    def m_users_info(self, p):
        user = self.users.get(p.get("user", ""))
        if user is None:
            raise SlackFault("user_not_found")
        return {"user": user}


class SlackFault(Exception):
    """An `ok: false` answer with this error code."""


def _check_content(p: dict[str, Any]) -> None:
    text, markdown, blocks = p.get("text") or "", p.get("markdown_text") or "", p.get("blocks") or []
    if len(text) > TEXT_LIMIT:
        raise SlackFault("msg_too_long")
    if len(markdown) > MARKDOWN_LIMIT:
        raise SlackFault("markdown_text_too_long")
    if len(blocks) > BLOCK_LIMIT:
        raise SlackFault("invalid_blocks")
    for block in blocks:
        if block.get("type") == "markdown" and len(block.get("text", "")) > MARKDOWN_LIMIT:
            raise SlackFault("invalid_blocks")
    if not (text or markdown or blocks):
        raise SlackFault("no_text")
