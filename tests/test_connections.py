"""Issue 22: one HTTP session per process. Slack, the model and response_url replies reuse their
connections, and the bot token is verified once per process, not once per event.

The fakes count the TCP connections they accept (tests/fakes/server.py) and the auth.test calls
they answer; everything goes through the running app, with signed requests.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Bot, MakeBot
from tests.fakes.slack_requests import event_body, mention

MENTIONS = 50
WAVE = 5  # mentions in flight at once: a few people asking together
BURST = 60
MOST_CONNECTIONS = 10


@pytest.fixture
async def wbot(weather, make_bot: MakeBot) -> Bot:
    return await make_bot(weather=weather)


async def answered(slack, count: int) -> None:
    """Wait until `count` answers are final (each mention's placeholder becomes its answer)."""
    await slack.wait_for(
        lambda: len([m for m in slack.posted(channel="C1") if "OK from the fake model" in str(m)]) >= count,
        timeout=120,
        what=f"{count} answers",
    )


async def test_fifty_answered_mentions_reuse_a_few_connections(wbot: Bot, slack, llm) -> None:
    slack_before, model_before = slack.connections, llm.connections
    for wave in range(MENTIONS // WAVE):
        statuses = await asyncio.gather(
            *(wbot.event(mention("<@UBOT> hello?", ts=f"{wave}.{i + 1}")) for i in range(WAVE))
        )
        assert [s for s, _ in statuses] == [200] * WAVE
        await wbot.idle(timeout=60)
    await answered(slack, MENTIONS)
    assert len(llm.requests) == MENTIONS
    calls = len(slack.calls)
    opened_slack, opened_model = slack.connections - slack_before, llm.connections - model_before
    assert calls >= 2 * MENTIONS  # every answer is a post and an update at least
    assert opened_slack <= MOST_CONNECTIONS, f"{opened_slack} connections for {calls} Slack calls"
    assert opened_model <= MOST_CONNECTIONS, f"{opened_model} connections for {MENTIONS} model calls"


async def test_a_cold_burst_of_mentions_verifies_the_token_once(wbot: Bot, slack) -> None:
    assert slack.auth_tests == 1  # at start: who am I (identify)
    statuses = await asyncio.gather(
        *(wbot.event(mention(f"<@UBOT> question {i}", ts=f"70.{i + 1}")) for i in range(BURST))
    )
    assert [s for s, _ in statuses] == [200] * BURST
    await wbot.idle(timeout=120)
    await answered(slack, BURST)
    assert slack.auth_tests == 1


async def test_a_restarted_process_verifies_its_token_once_more(wbot: Bot, slack) -> None:
    await wbot.restart()  # a new process: nothing it learnt survives
    await asyncio.gather(*(wbot.event(mention(f"<@UBOT> q{i}", ts=f"80.{i + 1}")) for i in range(10)))
    await wbot.idle(timeout=60)
    await answered(slack, 10)
    assert slack.auth_tests == 2


async def test_slash_command_replies_reuse_the_session(wbot: Bot, slack) -> None:
    await wbot.event(mention("<@UBOT> warm up", ts="90.1"))  # the process has talked to Slack
    await wbot.idle()
    before = slack.connections
    replies = 10
    for i in range(replies):
        status, _ = await wbot.command(
            "/switchboard", "usage", user="UADMIN", response_url=slack.response_url(f"r{i}")
        )
        assert status == 200
        await wbot.idle()
    assert [r["_name"] for r in slack.responses] == [f"r{i}" for i in range(replies)]
    assert all(r["response_type"] == "ephemeral" and r["text"] for r in slack.responses)
    opened = slack.connections - before
    assert opened <= 2, f"{opened} new connections for {replies} response_url replies"


async def test_listener_replies_reuse_the_session(wbot: Bot, slack) -> None:
    """`/digest` answers through Bolt's own `respond` (not a command job): the same session."""
    await wbot.event(mention("<@UBOT> warm up", ts="95.1"))
    await wbot.idle()
    before = slack.connections
    replies = 10
    for i in range(replies):
        status, _ = await wbot.command("/digest", "list", response_url=slack.response_url(f"d{i}"))
        assert status == 200
        await slack.wait_for(lambda n=i: len(slack.responses) > n, timeout=30, what=f"reply {i}")
    assert [r["_name"] for r in slack.responses] == [f"d{i}" for i in range(replies)]
    assert all(r["response_type"] == "ephemeral" and r["text"] for r in slack.responses)
    opened = slack.connections - before
    assert opened <= 2, f"{opened} new connections for {replies} response_url replies"


async def test_each_installation_is_verified_once_in_a_cold_burst(slack, llm, make_bot: MakeBot) -> None:
    from tests.test_oauth import KEY, install

    obot = await make_bot(
        SLACK_BOT_TOKEN="",
        SLACK_CLIENT_ID=slack.client_id,
        SLACK_CLIENT_SECRET=slack.client_secret,
        SLACK_TOKEN_KEY=KEY,
    )
    for team in ("T1", "T2"):
        assert await install(obot, slack, team) == 200
    before = slack.auth_tests
    bodies = [
        event_body(mention(f"<@UBOT> question {i}", ts=f"75.{i + 1}"), team=team)
        for i in range(BURST // 2)
        for team in ("T1", "T2")
    ]
    statuses = await asyncio.gather(*(obot.post(b, "application/json") for b in bodies))
    assert [s for s, _ in statuses] == [200] * len(bodies)
    await obot.idle(timeout=120)
    await answered(slack, len(bodies))
    verified = [slack.token_teams.get(c.token) for c in slack.calls_to("auth.test")[before:]]
    assert sorted(verified) == ["T1", "T2"]  # one auth.test per installation, not per event


async def test_questions_seconds_apart_keep_the_model_connection(wbot: Bot, slack, llm) -> None:
    """httpx forgets an idle connection after 5 s by default: questions that far apart each paid
    a new connection (a TLS handshake against a real server)."""
    await wbot.event(mention("<@UBOT> first", ts="60.1"))
    await answered(slack, 1)
    before = llm.connections
    await asyncio.sleep(6)  # idle longer than httpx's default keep-alive
    await wbot.event(mention("<@UBOT> second", ts="60.2"))
    await answered(slack, 2)
    assert llm.connections == before


async def test_one_session_is_shared_and_closed_at_shutdown(wbot: Bot) -> None:
    """Bolt copies its client's session into each request's client; nothing else owns one."""
    assert wbot.running is not None
    rt, app = wbot.rt, wbot.running.app
    assert rt.slack.session is rt.http and app.client.session is rt.http
    assert rt.llm is not None
    await wbot.stop()
    assert rt.http.closed and rt.llm.is_closed()
