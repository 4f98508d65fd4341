"""Socket Mode (the README's local setup): events arrive over a WebSocket and are acked, every
envelope once; Slack's `disconnect` messages are obeyed (issue 24 item 6)."""

from __future__ import annotations

import json

from bot.runtime import create_runtime
from bot.slack.server import start_socket_mode
from tests.conftest import make_settings  # not make_bot: Socket Mode runtimes, not the HTTP app
from tests.fakes.openai_server import Reply
from tests.fakes.slack_captures import FIXTURES, load, to_test_world
from tests.fakes.slack_requests import event_body, mention
from tests.test_health import get


async def test_mention_over_socket_mode(slack, llm, db_url) -> None:
    settings = make_settings(slack, llm, db_url, SLACK_APP_TOKEN="xapp-1-test", SLACK_SIGNING_SECRET="")
    assert settings.socket_mode
    running = await start_socket_mode(await create_runtime(settings))
    try:
        llm.script(Reply(content="hello over the socket"))
        body = json.loads(event_body(mention("<@UBOT> hi", ts="1.1"), event_id="EvS1"))
        envelope = await slack.socket_send(body)
        await slack.wait_for(lambda: any(a.get("envelope_id") == envelope for a in slack.socket_acks))
        await slack.socket_send(body, retry=1)  # Slack re-delivers: no second answer
        await slack.wait_for(lambda: len(slack.socket_acks) == 2)
        await slack.wait_for(lambda: "hello over the socket" in str(slack.posted(channel="C1")))
        await slack.wait_for(lambda: not len(running.rt.tasks), what="the answer to finish")
    finally:
        await running.stop(drain=5)
    assert len(llm.requests) == 1
    (posted,) = slack.posted(channel="C1")
    assert posted["thread_ts"] == "1.1"


async def connected(slack, llm, db_url, health_port: int | None = None):
    settings = make_settings(slack, llm, db_url, SLACK_APP_TOKEN="xapp-1-test", SLACK_SIGNING_SECRET="")
    running = await start_socket_mode(await create_runtime(settings), health_port=health_port)
    await slack.wait_for(lambda: slack.sockets, what="the first connection")
    return running


def acked(slack, envelope: str) -> bool:
    return any(a.get("envelope_id") == envelope for a in slack.socket_acks)


async def test_every_envelope_is_acked_handled_or_not(slack, llm, db_url) -> None:
    """Issue 24: envelopes no listener took (Bolt answered 404) were never acked, so Slack sent
    them again: an event type without a listener, an envelope type the bot does not know."""
    running = await connected(slack, llm, db_url)
    try:
        im_created = to_test_world(load("events/slack-docs.im_created.json"))
        unknown_event = await slack.socket_send(im_created)
        unknown_kind = await slack.socket_send({"type": "a_future_kind", "x": 1}, kind="a_future_envelope")
        await slack.wait_for(lambda: acked(slack, unknown_event) and acked(slack, unknown_kind), what="acks")
        await slack.wait_for(lambda: not len(running.rt.tasks))
        for envelope in (unknown_event, unknown_kind):  # exactly once each
            assert [a["envelope_id"] for a in slack.socket_acks].count(envelope) == 1
        assert llm.requests == [] and slack.posted() == []
    finally:
        await running.stop(drain=5)


async def test_link_disabled_stops_reconnecting_and_fails_readiness(slack, llm, db_url) -> None:
    """Issue 24: after `link_disabled` (Socket Mode turned off for the app) the client kept
    reconnecting; now it stops, and /readyz says why."""
    running = await connected(slack, llm, db_url, health_port=0)
    ready = f"http://127.0.0.1:{running.health_port}/readyz"
    try:
        assert (await get(ready))[0] == 200
        await slack.socket_disconnect("link_disabled")
        client = running.socket.client
        await slack.wait_for(lambda: client.disconnects == ["stopped: link_disabled"])
        status, body = await get(ready)
        assert status == 503 and json.loads(body)["failing"] == ["slack"]
        assert "link_disabled" in json.loads(body)["slack"]
        assert client.closed and not client.auto_reconnect_enabled  # nothing left to reconnect
        assert len(slack.calls_to("apps.connections.open")) == 1 and len(slack.sockets) == 1
        assert (await get(ready.replace("readyz", "healthz")))[0] == 200  # alive, just not ready
    finally:
        await running.stop(drain=5)


async def test_a_disconnect_warning_refreshes_the_connection_once(slack, llm, db_url) -> None:
    """Slack warns (`warning`) and then asks (`refresh_requested`) on the same connection: one
    new connection, not two; events on it are answered and acked."""
    running = await connected(slack, llm, db_url)
    try:
        await slack.socket_disconnect("warning", "refresh_requested")
        client = running.socket.client
        await slack.wait_for(lambda: len(slack.sockets) == 2 and not client.deciding, what="the refresh")
        # refresh_requested is either read before the old connection closes (and then sees that
        # connection replaced) or never read: one refresh either way.
        assert client.disconnects[0] == "refreshed: warning"
        assert client.disconnects[1:] in ([], ["already refreshed: refresh_requested"])
        assert len(slack.calls_to("apps.connections.open")) == 2 and len(slack.sockets) == 2
        llm.script(Reply(content="on the new connection"))
        body = json.loads(event_body(mention("<@UBOT> still there?", ts="2.1"), event_id="EvS2"))
        envelope = await slack.socket_send(body)
        await slack.wait_for(lambda: acked(slack, envelope))
        await slack.wait_for(lambda: "on the new connection" in str(slack.posted(channel="C1")))
        await slack.wait_for(lambda: not len(running.rt.tasks))
    finally:
        await running.stop(drain=5)


async def test_every_published_event_is_acked_once_over_socket_mode(slack, llm, db_url) -> None:
    """The same fixtures as tests/test_event_delivery.py, delivered as Socket Mode envelopes."""
    running = await connected(slack, llm, db_url)
    try:
        names = sorted(p.name for p in (FIXTURES / "events").glob("*.json"))
        sent = [await slack.socket_send(to_test_world(load(f"events/{name}"))) for name in names]
        await slack.wait_for(lambda: all(acked(slack, e) for e in sent), timeout=60, what="every ack")
        await slack.wait_for(lambda: not len(running.rt.tasks), timeout=60)
        ids = [a["envelope_id"] for a in slack.socket_acks]
        assert sorted(ids) == sorted(sent) and len(names) >= 21
    finally:
        await running.stop(drain=5)
