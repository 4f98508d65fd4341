"""Socket Mode on the fake Slack: apps.connections.open hands out a WebSocket URL on this fake,
and `socket_send()` delivers a payload over it the way Slack does (an envelope to acknowledge)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.slack_workspace import APP_ID

T = TypeVar("T")
Params = dict[str, Any]


class SocketMode:
    """Mixed into FakeSlack, which provides `port`, `sockets`, `socket_acks`, `next_ts` and `wait_for`."""

    port: int
    sockets: list[web.WebSocketResponse]
    socket_acks: list[dict[str, Any]]
    next_ts: Callable[[], str]
    wait_for: Callable[..., Any]

    def m_apps_connections_open(self, p: Params) -> Params:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}})
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

    async def socket_disconnect(self, *reasons: str) -> None:
        """Slack's `disconnect` messages on the newest connection, back to back ("warning",
        "refresh_requested", "link_disabled"); after link_disabled Slack closes the connection."""
        await self.wait_for(lambda: self.sockets, what="a Socket Mode connection")
        ws = self.sockets[-1]
        for reason in reasons:
            await ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "wss-111.slack.com"}}
            )
        if "link_disabled" in reasons:
            await ws.close()
