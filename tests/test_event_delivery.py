"""Issue 24 item 3: every delivered event gets a 2xx; only the fields a listener reads are judged.

Replays every event in tests/fixtures/slack/events/ (bolt-python's and java-slack-sdk's captures,
Slack's docs examples; see SOURCES.md) through the signed HTTP front door. Slack counts a non-2xx
answer as a failed delivery and disables an app's event subscriptions past 5% of them in an hour.
"""

from __future__ import annotations

import logging

import pytest

from tests.conftest import Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_captures import FIXTURES, event_bytes, load, to_test_world

EVENTS = sorted(p.name for p in (FIXTURES / "events").glob("*.json"))
# Event types no listener takes: acknowledged quietly, nothing above DEBUG in the log.
UNLISTENED = [  # tokens_revoked and app_uninstalled have listeners now (test_oauth.py)
    "slack-docs.im_created.json",
    "slack-docs.member_joined_channel.json",
]
DOCS_IDS = {"T123ABC456": "T1", "A123ABC456": "A1", "C123ABC456": "C1", "U061F7AUR": "U1"}


async def replay(bot: Bot, payload: dict) -> int:
    status, _ = await bot.post(event_bytes(payload), "application/json")
    await bot.idle()
    return status


@pytest.mark.parametrize("name", EVENTS)
async def test_every_published_event_gets_a_2xx(bot: Bot, llm, name: str) -> None:
    llm.script(*(Reply(content="Answered.") for _ in range(3)))
    assert await replay(bot, to_test_world(load(f"events/{name}"))) == 200


@pytest.mark.parametrize("name", UNLISTENED)
async def test_events_without_a_listener_are_acked_quietly(bot: Bot, slack, llm, caplog, name: str) -> None:
    """Bug: member_joined_channel, tokens_revoked and app_uninstalled got HTTP 404; im_created
    (its `channel` is an object) was logged as malformed."""
    payload = to_test_world(load(f"events/{name}"), DOCS_IDS)
    with caplog.at_level(logging.DEBUG):
        assert await replay(bot, payload) == 200
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno > logging.DEBUG]
    assert loud == []
    assert {c.method for c in slack.calls} <= {"auth.test"} and llm.requests == []  # Bolt's own check


async def test_docs_app_mention_with_an_event_ts_without_a_dot_is_answered(bot: Bot, slack, llm) -> None:
    """Bug: Slack's own docs example was dropped as malformed for a field the bot never reads."""
    payload = to_test_world(load("events/slack-docs.app_mention.json"), DOCS_IDS | {"U0LAN0Z89": "UBOT"})
    assert payload["event"]["event_ts"] == "1515449522000016"
    llm.script(Reply(content="Every bit of it."))
    assert await replay(bot, payload) == 200
    (answer,) = slack.posted(channel="C1")
    assert answer["text"] == "Every bit of it." and answer["thread_ts"] == "1515449522.000016"


async def test_a_field_a_listener_reads_is_still_checked(bot: Bot, slack, llm, caplog) -> None:
    payload = to_test_world(load("events/slack-docs.app_mention.json"), DOCS_IDS | {"U0LAN0Z89": "UBOT"})
    payload["event"]["ts"] = {"not": "a timestamp"}
    with caplog.at_level(logging.INFO):
        assert await replay(bot, payload) == 200
    assert "event.ts is a dict, not a string" in caplog.text
    assert llm.requests == [] and slack.posted() == []
