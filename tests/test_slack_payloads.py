"""Every payload type the bot consumes, as Slack published it, through the signed HTTP front door.

Outcomes: *answered* (one model call, one answer where it belongs), *ignored* (2xx, no model call,
no post) or *acknowledged* (2xx and the one Slack call that event asks for). Payloads come from
tests/fixtures/slack/ (see SOURCES.md); only their ids are moved into the test world.
"""

from __future__ import annotations

import pytest

from tests.conftest import Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_captures import (
    command_bytes,
    event_bytes,
    fill,
    interactivity_bytes,
    load,
    to_test_world,
)
from tests.fakes.slack_requests import dm, mention

EV = "events/bolt-python."


def model_calls(llm) -> int:
    return len(llm.requests)


async def replay(bot: Bot, payload: dict) -> None:
    status, _ = await bot.post(event_bytes(payload), "application/json")
    assert status == 200, f"Slack needs a 2xx for every delivery, got {status}"
    await bot.idle()


async def test_app_mention_is_answered_once_in_its_thread(bot: Bot, slack, llm) -> None:
    payload = to_test_world(load(EV + "test_events.app_mention_body.json"), {"W111": "UBOT", "W222": "U1"})
    llm.script(Reply(content="Hi Alice."))
    await replay(bot, payload)
    await replay(bot, payload | {"event_id": payload["event_id"]})  # Slack's retry of the same delivery
    assert model_calls(llm) == 1
    (answer,) = slack.posted(channel="C1")
    assert answer["thread_ts"] == payload["event"]["ts"] and answer["text"] == "Hi Alice."
    assert "Hi there!" in str(llm.requests[0]["messages"]) and "<@UBOT>" not in str(
        llm.requests[0]["messages"]
    )


IGNORED = [
    ("test_message.message_body.json", {"W111": "U1"}),  # channel chatter, not addressed to the bot
    ("test_message_bot.user_message_event_payload.json", {"W111": "UBOT"}),  # the bot's own message
    ("test_message_bot.bot_message_event_payload.json", {"UB111": "U7"}),  # another app's bot user
    ("test_message_bot.classic_bot_message_event_payload.json", {}),  # subtype bot_message
    ("test_events_ignore_self.response_url_message_event.json", {}),  # a response_url post
    ("test_message_changed.event_payload.json", {"U111": "U1", "U222": "U2"}),  # edits
    ("test_message_deleted.event_payload.json", {"U111": "U1"}),
    ("test_events_assistant.message_changed_event_body.json", {"W222": "U1", "U222": "U1", "W111": "UBOT"}),
    ("test_message_file_share.event_payload.json", {"U111": "U1"}),  # a file in a channel, no mention
]


@pytest.mark.parametrize(("name", "ids"), IGNORED, ids=[n.split(".")[1] for n, _ in IGNORED])
async def test_payloads_that_are_not_questions_are_ignored(bot: Bot, slack, llm, name, ids) -> None:
    await replay(bot, to_test_world(load(EV + name), ids))
    assert model_calls(llm) == 0 and slack.posted() == [] and slack.downloads == []


async def test_slackbot_is_never_answered(bot: Bot, slack, llm) -> None:
    """Bug 1: Slackbot's DMs ("You have been removed from #…") got answers."""
    in_thread = to_test_world(
        load(EV + "test_events_assistant.user_message_event_body.json"), {"W222": "USLACKBOT", "W111": "UBOT"}
    )
    await replay(bot, in_thread)
    await bot.event(dm("You have been removed from #secret by alice", user="USLACKBOT"))
    await bot.idle()
    assert model_calls(llm) == 0 and slack.posted() == []


async def test_thread_broadcast_in_a_known_thread_is_answered(bot: Bot, slack, llm) -> None:
    """Bug 2: "also send to channel" replies (subtype thread_broadcast) were ignored."""
    payload = to_test_world(load(EV + "test_message_thread_broadcast.event_payload.json"), {"U111": "U1"})
    root = payload["event"]["thread_ts"]
    llm.script(Reply(content="First answer."), Reply(content="Broadcast answered."))
    await bot.event(mention("<@UBOT> start a thread", ts=root))
    await bot.idle()
    await replay(bot, payload)
    assert model_calls(llm) == 2
    assert [m["text"] for m in slack.posted(channel="C1", thread_ts=root)] == [
        "First answer.",
        "Broadcast answered.",
    ]


async def test_app_mention_with_subtype_thread_broadcast_is_answered(bot: Bot, slack, llm) -> None:
    event = mention("<@UBOT> and also to the channel", ts="1633670813.007501", thread_ts="1633663824.000500")
    event["subtype"] = "thread_broadcast"
    llm.script(Reply(content="Seen."))
    await bot.event(event)
    await bot.idle()
    assert (
        model_calls(llm) == 1
        and slack.posted(channel="C1", thread_ts="1633663824.000500")[0]["text"] == "Seen."
    )


async def test_assistant_thread_lifecycle(bot: Bot, slack, llm) -> None:
    """Started: greeting and at most 4 prompts. Context changed: stored, no Slack call. Message: one answer
    that knows which channel the user is looking at (bug 6)."""
    ids = {"W222": "U1", "W111": "UBOT", "C222": "C1", "C333": "C2"}
    await replay(bot, to_test_world(load(EV + "test_events_assistant.thread_started_event_body.json"), ids))
    (prompts,) = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert 1 <= len(prompts.params["prompts"]) <= 4
    thread = "1726133698.626339"
    assert await bot.rt.db.assistant_contexts.viewed("D1", thread, "T1") == "C1"
    assert await bot.rt.db.assistant_contexts.viewed("D1", thread, "T2") is None  # another workspace
    before = len(slack.calls)
    await replay(
        bot, to_test_world(load(EV + "test_events_assistant.thread_context_changed_event_body.json"), ids)
    )
    assert len(slack.calls) == before  # acknowledged; Bolt's default store would have called Slack
    assert await bot.rt.db.assistant_contexts.viewed("D1", thread, "T1") == "C2"
    llm.script(Reply(content="Slack launched in 2014."))
    await replay(bot, to_test_world(load(EV + "test_events_assistant.user_message_event_body.json"), ids))
    assert model_calls(llm) == 1
    assert "<#C2>" in str(llm.requests[0]["messages"])  # "this channel" = the one being viewed
    assert slack.posted(channel="D1", thread_ts=thread)[-1]["text"] == "Slack launched in 2014."


async def test_app_home_opened(bot: Bot, slack, llm) -> None:
    """Bug 4: app_home_opened was subscribed but unhandled (HTTP 404)."""
    messages_tab = to_test_world(load(EV + "test_events_org_apps.event_payload.json"), {"W111": "U1"})
    await replay(bot, messages_tab)
    assert slack.calls_to("views.publish") == []  # the Messages tab: acknowledged, nothing to draw
    home = fill(
        load("events/java-slack-sdk.AppHomeOpenedPayload.json"),
        {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "user": "U1", "channel": "D1",
         "tab": "home", "event_id": "EvHome1", "event_ts": "1700000000.000100", "user_id": "UBOT",
         "is_bot": True},
    )  # fmt: skip
    home["event"]["type"] = "app_home_opened"  # (the skeleton's type is already this; kept explicit)
    await replay(bot, home)
    (call,) = slack.calls_to("views.publish")
    view = slack.home_views["U1"]
    text = str(view["blocks"])
    assert call.params["user_id"] == "U1" and view["type"] == "home"
    for needle in ("/weather", "/summarize", "/digest", "Your recent runs", "Summarize this thread"):
        assert needle in text


async def test_message_shortcut_summarizes_the_thread_for_its_user_only(bot: Bot, slack, llm) -> None:
    payload = to_test_world(
        load("interactivity/bolt-python.test_shortcut.message_shortcut_body.json"),
        {"W111": "U1", "W222": "UBOT", "U222": "UBOT", "test-shortcut": "summarize_thread"},
    )
    root = payload["message_ts"]
    slack.add_message("C1", "U1", "<@UBOT> test", ts=root)
    slack.add_message("C1", "U2", "I think we ship on Friday", thread_ts=root)
    payload["response_url"] = slack.response_url("shortcut")
    llm.script(Reply(content="- Bob suggests shipping on Friday"))
    status, _ = await bot.post(interactivity_bytes(payload), "application/x-www-form-urlencoded")
    assert status == 200
    await bot.idle()
    (summary,) = slack.ephemerals
    assert summary["recipient"] == "U1" and "Friday" in summary["text"] and slack.posted() == []
    assert "I think we ship on Friday" in str(llm.requests[0]["messages"])


async def test_slash_command_payload(bot: Bot, slack, llm) -> None:
    form = fill(
        load("interactivity/java-slack-sdk.SlashCommandPayload.json"),
        {"token": "legacy", "api_app_id": "A1", "team_id": "T1", "team_domain": "fake", "channel_id": "C1",
         "channel_name": "general", "user_id": "U1", "user_name": "alice", "command": "/switchboard",
         "text": "help", "response_url": slack.response_url("cmd"), "trigger_id": "1.2.3"},
    )  # fmt: skip
    status, body = await bot.post(command_bytes(form), "application/x-www-form-urlencoded")
    assert status == 200 and "/summarize" in body and "/weather" in body
