"""Slack failures that may or may not have taken effect: the answer still appears exactly once."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.output.calls import call
from bot.slack.output.split import split_markdown
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import dm, mention
from tests.test_answers import markdown_of
from tests.test_render import answer_30k


@pytest.fixture
async def fbot(make_bot: MakeBot) -> Bot:
    return await make_bot(STREAM_UPDATE_SECONDS="0.1")


async def ask_in_channel(bot: Bot, slack: FakeSlack, text: str) -> str:
    """The user's message is in Slack (as it would be) before the bot hears of it; returns its ts."""
    ts = slack.add_message("C1", "U1", text)
    await bot.event(mention(text, ts=ts))
    await bot.idle()
    return ts


def thinking_left(slack: FakeSlack) -> list[dict]:
    return [m for m in slack.posted() if "Thinking" in m.get("text", "")]


@pytest.mark.parametrize("error", ["internal_error", "fatal_error"])
async def test_posts_applied_despite_an_error_appear_once(fbot: Bot, slack, llm, error: str) -> None:
    text = answer_30k()
    parts = split_markdown(text)
    assert len(parts) >= 3
    # Every post of the answer (the placeholder, then each further part) fails after it was made.
    slack.fail_next("chat.postMessage", error=error, applied=True, times=len(parts))
    llm.script(Reply(content=text))
    root = await ask_in_channel(fbot, slack, "<@UBOT> write a lot")
    posted = slack.posted(channel="C1", thread_ts=root)
    assert [markdown_of(m) for m in posted] == parts
    assert thinking_left(slack) == []
    assert len(slack.calls_to("chat.postMessage")) == len(parts)  # none was posted a second time


async def test_a_post_that_failed_before_it_was_made_is_made_once(fbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.postMessage", error="internal_error")  # not applied
    llm.script(Reply(content="made it"))
    root = await ask_in_channel(fbot, slack, "<@UBOT> hi")
    (message,) = slack.posted(channel="C1", thread_ts=root)
    assert markdown_of(message) == "made it"
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert slack.calls_to("conversations.replies")[0].params["include_all_metadata"] in ("1", "true", True)


async def test_a_500_after_the_post_was_made_is_not_retried_blindly(fbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.postMessage", status=500, error="internal_error", applied=True)
    llm.script(Reply(content="once"))
    root = await ask_in_channel(fbot, slack, "<@UBOT> hi")
    (message,) = slack.posted(channel="C1", thread_ts=root)
    assert markdown_of(message) == "once" and thinking_left(slack) == []


async def test_a_top_level_dm_post_is_looked_up_in_the_history(fbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.postMessage", error="fatal_error", applied=True)
    llm.script(Reply(content="in the DM"))
    ts = slack.add_message("D1", "U1", "hello")
    await fbot.event(dm("hello", ts=ts))
    await fbot.idle()
    mine = slack.posted(channel="D1")
    assert [markdown_of(m) or m["text"] for m in mine] == ["in the DM"]


async def test_an_applied_append_error_replaces_the_stream_with_the_exact_answer(
    fbot: Bot, slack, llm
) -> None:
    text = " ".join(["A streamed answer that arrives in many small pieces."] * 20)
    slack.fail_next("chat.appendStream", error="internal_error", applied=True)
    llm.script(Reply(content=text, stream_delay=0.02))
    root = slack.add_message("D1", "U1", "tell me")
    await fbot.event(dm("tell me", ts=root, thread_ts=root))
    await fbot.idle()
    assert slack.calls_to("chat.appendStream"), "the answer should have streamed in pieces"
    (message,) = slack.posted(channel="D1")  # the garbled stream was deleted
    assert markdown_of(message) == text
    assert message.get("streaming") is not True


async def test_an_applied_delete_is_repeated_and_counts_as_done(slack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    ts = (await call(client.chat_postMessage, channel="C1", text="to go"))["ts"]
    slack.fail_next("chat.delete", error="internal_error", applied=True)
    await call(client.chat_delete, channel="C1", ts=ts)  # the repeat's message_not_found means done
    assert slack.posted(channel="C1") == [] and len(slack.calls_to("chat.delete")) == 2


async def test_an_ephemeral_that_may_have_been_shown_is_not_repeated(slack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    slack.fail_next("chat.postEphemeral", error="fatal_error", applied=True)
    with pytest.raises(SlackApiError, match="fatal_error"):
        await call(client.chat_postEphemeral, channel="C1", user="U1", text="only once")
    assert [e["text"] for e in slack.ephemerals] == ["only once"]
    slack.fail_next("chat.postEphemeral", error="ratelimited")  # refused up front: repeated
    await call(client.chat_postEphemeral, channel="C1", user="U1", text="later")
    assert [e["text"] for e in slack.ephemerals] == ["only once", "later"]
