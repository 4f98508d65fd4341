"""Socket Mode with Slack's etiquette, on slack_sdk's aiohttp client and Bolt's adapter.

As shipped (slack-sdk 3.48, slack-bolt 1.30), Bolt acknowledges an envelope only when the app
answered 200: an envelope of a type nobody handles, a listener that raised, or an envelope without
a payload is never acknowledged, so Slack delivers it again. And every `disconnect` message makes
the client reconnect: after `link_disabled` (Socket Mode was turned off for the app) it reconnects
forever, and a `warning` followed by `refresh_requested` on one connection reconnects twice.

Here every envelope with an `envelope_id` is acknowledged exactly once, handled or not;
`link_disabled` stops the client for good and records why (readiness fails with it); `warning` and
`refresh_requested` replace the connection they arrived on once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse

log = logging.getLogger(__name__)

LINK_DISABLED = (
    "Slack turned Socket Mode off for this app (disconnect: link_disabled): turn it on again under "
    "Socket Mode in the app's settings, then restart the bot"
)


class EtiquetteClient(SocketModeClient):
    """slack_sdk's client, plus: ack what nobody acked; decide each `disconnect` once."""

    def __init__(self, *args: Any, on_link_disabled: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_link_disabled = on_link_disabled
        self.disconnects: list[str] = []  # what each `disconnect` led to, e.g. "refreshed: warning"
        self._acked: set[str] = set()  # envelopes in flight that have had their ack
        self._refresh = asyncio.Lock()
        self._work: set[asyncio.Future[Any]] = set()

    async def enqueue_message(self, message: str) -> None:
        """`disconnect` is decided here, tagged with the connection it arrived on; the rest queue."""
        if '"disconnect"' in message:
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("type") == "disconnect":
                await self._on_disconnect(str(parsed.get("reason") or ""))
                return
        await super().enqueue_message(message)

    async def _on_disconnect(self, reason: str) -> None:
        if reason == "link_disabled":
            # At once, before this connection's close frame can start the SDK's reconnect.
            self.closed, self.auto_reconnect_enabled = True, False
            self.disconnects.append("stopped: link_disabled")
            log.error("%s", LINK_DISABLED)
            self.on_link_disabled(LINK_DISABLED)
            self._spawn(self.close())  # type: ignore[no-untyped-call]  # slack_sdk's close() is unannotated
            return
        # Off this receive loop: reconnecting cancels the loop that received the message.
        self._spawn(self._refresh_once(reason, await self.session_id()))

    async def _refresh_once(self, reason: str, arrived_on: str) -> None:
        async with self._refresh:
            if self.closed or arrived_on != await self.session_id():
                self.disconnects.append(f"already refreshed: {reason}")
                return
            log.info("Slack asked for a new Socket Mode connection (%s); reconnecting once", reason[:64])
            await self.connect_to_new_endpoint(force=True)
            self.disconnects.append(f"refreshed: {reason}")

    @property
    def deciding(self) -> bool:
        """A `disconnect` is still being acted on (a refresh, a close)."""
        return bool(self._work)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def send_socket_mode_response(self, response: dict[str, Any] | SocketModeResponse) -> None:
        await super().send_socket_mode_response(response)
        envelope = (
            response.envelope_id if isinstance(response, SocketModeResponse) else response.get("envelope_id")
        )
        if envelope:
            self._acked.add(str(envelope))

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        envelope = message.get("envelope_id")
        try:
            await super().run_message_listeners(message, raw_message)
        finally:
            if isinstance(envelope, str) and envelope and envelope not in self._acked:
                log.debug(
                    "acknowledged envelope %s (%s) that no listener acked", envelope[:64], message.get("type")
                )
                try:
                    await self.send_socket_mode_response({"envelope_id": envelope})
                except Exception as exc:  # the connection is going away; Slack will redeliver
                    log.warning("could not acknowledge a Socket Mode envelope: %s", type(exc).__name__)
            self._acked.discard(str(envelope))


class EtiquetteHandler(AsyncSocketModeHandler):
    """Bolt's handler on an EtiquetteClient (built as Bolt builds its own client)."""

    def __init__(self, app: AsyncApp, app_token: str, on_link_disabled: Callable[[str], None]) -> None:
        self.app = app
        self.app_token = app_token
        self.client = EtiquetteClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            ping_interval=10,
            on_link_disabled=on_link_disabled,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
