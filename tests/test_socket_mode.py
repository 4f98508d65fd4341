"""Socket Mode (the README's local setup): events arrive over a WebSocket and are acked."""

from __future__ import annotations

import json

from bot.runtime import create_runtime
from bot.slack.server import start_socket_mode
from tests.conftest import make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import event_body, mention


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
