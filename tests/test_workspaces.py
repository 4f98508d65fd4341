"""Issue 24: the workspace of an event is the installing one, also in Slack Connect channels.

Envelopes follow Slack's documented Events API shape (docs.slack.dev/apis/events-api: the
outer `event_callback` with `context_team_id`, `context_enterprise_id` and `authorizations`)
and its Slack Connect message fields (`team`, `user_team`, `source_team` are the sender's
organisation, the envelope's `team_id` too); see tests/fixtures/slack/SOURCES.md.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.slack.door.workspace import event_workspace, request_enterprise, request_workspace
from bot.slack.listeners.home_settings import CALLBACK
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import command_body, view_submission_body
from tests.test_oauth import install, oauth_env, org_command_body, org_wide_body, token_of

HOME, GUEST = "T1", "TEXT0001"  # the installing workspace; the other organisation
GUEST_ORG = "E0GUEST1"  # the other organisation is a Grid org


@pytest.fixture
async def obot(make_bot: MakeBot, slack) -> Bot:
    """The bot in OAuth mode (installed per workspace through /slack/install)."""
    return await make_bot(**oauth_env(slack))


_ids = itertools.count(1)


def connect_envelope(event: dict[str, Any], sender_team: str) -> bytes:
    """An event from a Slack Connect channel as Slack delivers it to HOME's installation."""
    event = {**event, "team": sender_team, "user_team": sender_team, "source_team": sender_team}
    return json.dumps(
        {
            "token": "legacy-verification-token",
            "team_id": sender_team,
            "context_team_id": HOME,
            "context_enterprise_id": None,
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": f"EvWS{next(_ids):06d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": HOME,
                    "user_id": "UBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": True,
        }
    ).encode()


def message(kind: str, text: str, user: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "channel": "C1",
        "event_ts": ts,
        "channel_type": "channel",
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if kind == "app_mention":
        event.pop("channel_type")
    return event


def test_workspace_is_the_installing_one() -> None:
    shared = json.loads(connect_envelope(message("message", "hi", "UEXT", "1.1"), GUEST))
    assert shared["team_id"] == GUEST and event_workspace(shared) == HOME
    org_wide = {**shared, "authorizations": [{"team_id": None, "enterprise_id": "E1"}]}
    assert event_workspace(org_wide) == HOME  # context_team_id when the install is org-wide
    assert event_workspace({"team_id": "T9"}) == "T9"
    fixtures = Path(__file__).parent / "fixtures" / "slack" / "events"
    org_app = json.loads((fixtures / "bolt-python.test_events_org_apps.event_payload.json").read_text())
    assert org_app["authorizations"][0]["team_id"] is None and event_workspace(org_app) == "T111"
    file_share = json.loads((fixtures / "bolt-python.test_message_file_share.event_payload.json").read_text())
    assert event_workspace(file_share) == "T111"
    assert event_workspace({"event": {"team": "T8"}}) == "T8"


async def test_external_starts_local_follows_one_conversation(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Karachi is warm."), Reply(content="Berlin is cold."))
    status, _ = await bot.post(
        connect_envelope(message("app_mention", "<@UBOT> weather in Karachi?", "UEXT", "500.1"), GUEST),
        "application/json",
    )
    assert status == 200
    await bot.idle()
    await bot.post(
        connect_envelope(message("message", "and Berlin?", "ULOCAL", "500.5", "500.1"), HOME),
        "application/json",
    )
    await bot.idle()
    second = llm.requests[1]["messages"]
    assert [m["content"] for m in second[1:]] == ["weather in Karachi?", "Karachi is warm.", "and Berlin?"]
    assert [p["thread_ts"] for p in slack.posted(channel="C1")] == ["500.1", "500.1"]


async def test_external_reply_without_mention_is_answered(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="first"), Reply(content="second"))
    await bot.post(
        connect_envelope(message("app_mention", "<@UBOT> hello", "ULOCAL", "600.1"), HOME), "application/json"
    )
    await bot.idle()
    await bot.post(
        connect_envelope(message("message", "a question from outside", "UEXT", "600.4", "600.1"), GUEST),
        "application/json",
    )
    await bot.idle()
    assert len(llm.requests) == 2
    assert llm.requests[1]["messages"][-1]["content"] == "a question from outside"
    assert [p["thread_ts"] for p in slack.posted(channel="C1")] == ["600.1", "600.1"]


def guest_modal_submission(metadata: dict[str, str]) -> bytes:
    """A modal of HOME's app submitted from the other organisation's workspace, as bolt-js issue
    #1614 and Slack's view_submission reference show it: `team`, `user.team_id`, `view.team_id`
    and `enterprise` are the submitter's; only `view.app_installed_team_id` names HOME."""
    body = view_submission_body(
        CALLBACK,
        {"model": {"model": {"type": "plain_text_input", "value": "gpt-guest"}}},
        private_metadata=json.dumps(metadata),
        user="UADMIN",
        team=GUEST,
    )
    payload = json.loads(dict(parse_qsl(body.decode()))["payload"])
    payload["team"]["enterprise_id"] = GUEST_ORG
    payload["enterprise"] = {"id": GUEST_ORG, "name": "Guest org"}
    payload["view"]["app_installed_team_id"] = HOME
    return urlencode({"payload": json.dumps(payload)}).encode()


def test_interactivity_and_commands_follow_the_same_rule() -> None:
    modal = json.loads(dict(parse_qsl(guest_modal_submission({}).decode()))["payload"])
    assert request_workspace(modal) == HOME and request_enterprise(modal) == (None, False)
    from_home = {**modal, "team": {"id": HOME, "enterprise_id": "E7"}, "enterprise": {"id": "E7"}}
    assert request_enterprise(from_home) == ("E7", False)  # the submitter is of the installing side
    org_click = {"type": "block_actions", "team": None, "user": {"id": "U1", "team_id": "T7"}}
    org_click |= {"enterprise": {"id": "E1", "name": "Org"}, "is_enterprise_install": True}
    assert request_workspace(org_click) == "T7" and request_enterprise(org_click) == ("E1", True)
    command = dict(parse_qsl(org_command_body("/ask", "x").decode()))
    assert request_workspace(command) == "T7" and request_enterprise(command) == ("E1", True)
    plain = dict(parse_qsl(command_body("/ask", "x", team="T2").decode()))
    assert request_workspace(plain) == "T2" and request_enterprise(plain) == (None, False)
    # An event from a Slack Connect channel: the envelope's enterprise is the sender's, never paired
    # with the installing workspace (whose `authorizations` say it is in no org).
    shared = json.loads(connect_envelope(message("message", "hi", "UEXT", "1.1"), GUEST))
    shared["enterprise_id"] = GUEST_ORG
    assert request_workspace(shared) == HOME and request_enterprise(shared) == (None, False)
    org_event = json.loads(org_wide_body({"type": "app_home_opened", "user": "U1"}))
    assert request_workspace(org_event) == "T7" and request_enterprise(org_event) == ("E1", True)


async def test_a_modal_from_the_other_organisation_is_authorized_as_the_installing_one(
    obot: Bot, slack
) -> None:
    """Bolt's own lookup pairs `view.app_installed_team_id` with the submitter's `enterprise` and
    finds no installation; our rule authorizes it for HOME, whose listener then refuses a change
    by the other organisation's admin (its workspace is not the one the modal names)."""
    await install(obot, slack, HOME)
    await install(obot, slack, "T2")
    status, text = await obot.post(
        guest_modal_submission({"team": HOME, "scope": "C1"}), "application/x-www-form-urlencoded"
    )
    await obot.idle()
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    assert "out of date" in text
    assert await obot.rt.db.channel_settings.rows(HOME, "C1") == {}
    assert await obot.rt.db.channel_settings.rows(GUEST, "C1") == {}
    assert {c.token for c in slack.calls_to("auth.test")[-1:]} == {token_of(slack, HOME)}


async def test_two_workspaces_and_an_org_through_the_front_door(obot: Bot, slack, llm) -> None:
    """The same channel and thread in two workspaces and an org-wide install's workspace: three
    conversations, each answered with its own installation's token."""
    for installer in (HOME, "T2", "E1"):
        await install(obot, slack, installer)
    llm.script(*(Reply(content=f"answer {n}") for n in range(6)))
    from tests.fakes.slack_requests import event_body, mention, thread_message

    bodies = {
        HOME: lambda e: event_body(e, team=HOME),
        "T2": lambda e: event_body(e, team="T2"),
        "T7": lambda e: org_wide_body(e, team="T7"),
    }
    for team, body in bodies.items():
        await obot.post(body(mention(f"<@UBOT> question of {team}", ts="800.1")), "application/json")
        await obot.idle()
    for team, body in bodies.items():
        follow = thread_message(f"follow-up of {team}", ts="800.5", thread_ts="800.1")
        await obot.post(body(follow), "application/json")
        await obot.idle()
    contents = [[m["content"] for m in r["messages"][1:]] for r in llm.requests[3:]]
    assert contents == [
        [f"question of {team}", f"answer {n}", f"follow-up of {team}"] for n, team in enumerate(bodies)
    ]
    tokens = [c.token for c in slack.calls_to("chat.postMessage")]
    expected = [token_of(slack, HOME), token_of(slack, "T2"), token_of(slack, "E1")]
    assert tokens == expected * 2


async def test_migration_0013_keys_assistant_contexts_by_workspace_and_back(db_url) -> None:
    """Up: rows keep their ids and views, a row without a workspace gets team "", the same DM
    thread may now exist per workspace. Down: one row per (channel, thread) again, the newest."""
    from alembic import command
    from sqlalchemy import text

    from bot.db import Database, schema
    from tests.test_migrations import upgrade_to

    db = Database(db_url)
    try:
        await upgrade_to(db, "0012")
        insert = (
            "INSERT INTO assistantcontext (channel_id, thread_ts, viewed_channel_id, team_id, updated_at) "
            "VALUES (:c, :t, :v, :team, CURRENT_TIMESTAMP)"
        )
        async with db.engine.begin() as conn:
            await conn.execute(text(insert), {"c": "D1", "t": "1.1", "v": "C1", "team": None})
            await conn.execute(text(insert), {"c": "D2", "t": "2.2", "v": "C2", "team": "T1"})
        await upgrade_to(db, "0013")
        assert await db.assistant_contexts.viewed("D1", "1.1", "T1") == "C1"  # saved before workspaces
        await db.assistant_contexts.save("D2", "2.2", "C9", "T2")  # the same thread in another workspace
        await db.assistant_contexts.save("D1", "1.1", "C5", "T1")
        assert await db.assistant_contexts.viewed("D2", "2.2", "T1") == "C2"
        assert await db.assistant_contexts.viewed("D2", "2.2", "T2") == "C9"
        assert await db.assistant_contexts.viewed("D1", "1.1", "T1") == "C5"  # its own row first
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO gridworkspace VALUES ('T7', 'E1', CURRENT_TIMESTAMP)"))
            await conn.run_sync(lambda c: command.downgrade(schema.alembic_config(c), "0012"))
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT channel_id, thread_ts, team_id, viewed_channel_id FROM assistantcontext "
                        "ORDER BY channel_id"
                    )
                )
            ).all()
        assert [tuple(r) for r in rows] == [("D1", "1.1", "T1", "C5"), ("D2", "2.2", "T2", "C9")]
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(schema.alembic_config(c), "head"))
        assert (await schema.state(db.engine)).status == "current"
        await db.assistant_contexts.save("D3", "3.3", "C3", "T1")  # new ids follow the copied ones
        assert await db.assistant_contexts.viewed("D3", "3.3", "T1") == "C3"
    finally:
        await db.close()


async def test_the_same_assistant_thread_in_two_workspaces_keeps_two_contexts(obot: Bot, slack) -> None:
    """bolt-python's published assistant_thread_started, delivered once per workspace with the same
    DM id and thread ts: each workspace keeps the channel its user was viewing."""
    from tests.fakes.slack_captures import load, to_test_world

    await install(obot, slack, HOME)
    await install(obot, slack, "T2")
    started = load("events/bolt-python.test_events_assistant.thread_started_event_body.json")
    for team, viewing in ((HOME, "C1"), ("T2", "C2")):
        ids = {"W222": "U1", "W111": "UBOT", "T111": team, "C222": viewing}
        status, _ = await obot.post(json.dumps(to_test_world(started, ids)).encode(), "application/json")
        assert status == 200
        await obot.idle()
    thread = "1726133698.626339"
    assert await obot.rt.db.assistant_contexts.viewed("D1", thread, HOME) == "C1"
    assert await obot.rt.db.assistant_contexts.viewed("D1", thread, "T2") == "C2"
    prompts = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert [c.token for c in prompts] == [token_of(slack, HOME), token_of(slack, "T2")]
