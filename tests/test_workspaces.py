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

from bot.slack.workspace import event_workspace
from tests.conftest import Bot
from tests.fakes.openai_server import Reply

HOME, GUEST = "T1", "TEXT0001"  # the installing workspace; the other organisation
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
