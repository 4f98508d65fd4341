"""Issue 4: status while working, streamed answers, long answers, feedback, Slack's faults."""

from __future__ import annotations

import pytest

from bot.slack.output.safe_text import JOINER
from bot.slack.output.split import split_markdown
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import dm, mention


def markdown_of(message: dict) -> str:
    return "".join(b.get("text", "") for b in message.get("blocks") or [] if b.get("type") == "markdown")


@pytest.fixture
async def sbot(weather, make_bot: MakeBot) -> Bot:
    return await make_bot(weather=weather, STREAM_UPDATE_SECONDS="0.1")


def weather_then(answer: str, **kw) -> list[Reply]:
    return [Reply(tool_calls=[ToolCall("get_weather", {"location": "Karachi"})]), Reply(content=answer, **kw)]


async def test_channel_placeholder_shows_status_then_becomes_the_answer(sbot: Bot, slack, llm) -> None:
    llm.script(*weather_then("It will be **sunny** in Karachi."))
    await sbot.event(mention("<@UBOT> weather in Karachi?", ts="1.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")  # one message: the placeholder became the answer
    assert markdown_of(message) == "It will be **sunny** in Karachi."
    assert message["thread_ts"] == "1.1"
    edits = [c.params.get("text") for c in slack.calls_to("chat.update")]
    assert "_Checking the weather…_" in edits
    assert slack.calls_to("chat.postMessage")[0].params["text"] == "_Thinking…_"
    assert slack.calls_to("assistant.threads.setStatus") == []  # not an assistant thread


async def test_channel_stream_updates_at_a_bounded_rate(sbot: Bot, slack, llm) -> None:
    text = "A long streamed answer. " * 40  # 960 characters, 48 chunks of 20
    llm.script(Reply(content=text, stream_delay=0.02))
    await sbot.event(mention("<@UBOT> tell me a story", ts="2.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")
    assert markdown_of(message) == text.strip() or markdown_of(message) == text
    updates = slack.calls_to("chat.update")
    partial = [u for u in updates if u.params.get("blocks") and markdown_of(u.params) != markdown_of(message)]
    assert partial, "the answer should appear while it is generated"
    assert len(updates) < 48 / 2  # edits are batched, not one per delta
    assert all(markdown_of(u.params).rstrip(" …") in text for u in partial)


async def test_assistant_thread_streams_natively_and_clears_status(sbot: Bot, slack, llm) -> None:
    # Streamed over a while, as a model does (an answer that is whole at once is simply posted).
    llm.script(*weather_then("Karachi: warm and dry. " * 5, stream_delay=0.05))
    await sbot.event(dm("weather?", ts="3.2", thread_ts="3.1"))
    await sbot.idle()
    statuses = [c.params["status"] for c in slack.calls_to("assistant.threads.setStatus")]
    assert statuses[0] == "Thinking…" and "Checking the weather…" in statuses and statuses[-1] == ""
    start = slack.calls_to("chat.startStream")[0].params
    assert (start["thread_ts"], start["recipient_user_id"], start["recipient_team_id"]) == ("3.1", "U1", "T1")
    (message,) = slack.posted(channel="D1")
    assert message["text"] == "Karachi: warm and dry. " * 5
    assert message["streaming"] is False and message["blocks"][0]["type"] == "context_actions"
    assert slack.calls_to("assistant.threads.setTitle")[0].params["title"] == "weather?"


async def test_status_is_cleared_when_the_model_fails(sbot: Bot, slack, llm) -> None:
    llm.script(Reply(status=500, error_message="boom"))
    await sbot.event(dm("hi", ts="4.2", thread_ts="4.1"))
    await sbot.idle()
    statuses = [c.params["status"] for c in slack.calls_to("assistant.threads.setStatus")]
    assert statuses == ["Thinking…", ""]
    (message,) = slack.posted(channel="D1")
    assert "Sorry" in message["text"] and "run 1" in message["text"]


async def test_a_30k_answer_arrives_whole_in_order(sbot: Bot, slack, llm) -> None:
    from tests.test_render import answer_30k

    text = answer_30k()
    llm.script(Reply(content=text))
    await sbot.event(mention("<@UBOT> write a lot", ts="5.1"))
    await sbot.idle()
    posted = slack.posted(channel="C1")
    assert [markdown_of(m) for m in posted] == split_markdown(text)
    assert all(m["thread_ts"] == "5.1" for m in posted)
    # feedback and "Show steps" under the last part
    assert [b["type"] for b in posted[-1]["blocks"][-2:]] == ["context_actions", "actions"]
    assert (await queries.last_run(sbot.rt.db)).status == "ok"


async def test_a_long_answer_in_an_assistant_thread_replaces_the_live_stream(sbot: Bot, slack, llm) -> None:
    from tests.test_render import answer_30k

    text = answer_30k()
    llm.script(Reply(content=text))
    await sbot.event(dm("write a lot", ts="6.2", thread_ts="6.1"))
    await sbot.idle()
    posted = slack.posted(channel="D1")
    assert [markdown_of(m) for m in posted] == split_markdown(text)  # the capped live view was removed


async def test_feedback_click_is_stored_and_acknowledged(sbot: Bot, slack, llm) -> None:
    llm.script(Reply(content="An answer."))
    await sbot.event(mention("<@UBOT> rate me", ts="7.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")
    (feedback,) = [b for b in message["blocks"] if b["type"] == "context_actions"]
    buttons = feedback["elements"][0]
    good = buttons["positive_button"]["value"]
    await sbot.action(
        {"type": "feedback_buttons", "action_id": "answer_feedback", "value": good},
        user="U2",
        message_ts=message["ts"],
        thread_ts="7.1",
    )
    await sbot.idle()
    bad = buttons["negative_button"]["value"]
    await sbot.action(
        {"type": "feedback_buttons", "action_id": "answer_feedback", "value": bad},
        user="U2",
        message_ts=message["ts"],
        thread_ts="7.1",
    )
    await sbot.idle()
    run = await queries.last_run(sbot.rt.db)
    (fb,) = await queries.feedback(sbot.rt.db, run.id)
    assert (fb.user_id, fb.value) == ("U2", "bad")  # the second click changed it
    acks = slack.calls_to("chat.postEphemeral")
    assert [a.params["user"] for a in acks] == ["U2", "U2"] and acks[0].params["thread_ts"] == "7.1"


async def test_slack_429_is_waited_out_and_posted_once(sbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    llm.script(Reply(content="after the rate limit"))
    await sbot.event(mention("<@UBOT> hi", ts="8.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")
    assert markdown_of(message) == "after the rate limit"
    assert len(slack.calls_to("chat.postMessage")) == 2  # the 429, then the one that counted


async def test_a_transient_failure_is_retried_without_duplicates(sbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.update", error="internal_error", times=2)
    llm.script(Reply(content="made it"))
    await sbot.event(mention("<@UBOT> hi", ts="9.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")
    assert markdown_of(message) == "made it"
    assert (await queries.last_run(sbot.rt.db)).status == "ok"


async def test_a_placeholder_that_keeps_failing_to_update_gives_way_to_a_new_message(
    sbot: Bot, slack, llm
) -> None:
    """Issue 24 item 5 (this test used to accept the lost answer): the answer is posted anew,
    once, and the placeholder that could not become it is deleted."""
    llm.script(Reply(content="shown after all"))
    slack.fail_next("chat.update", error="internal_error", times=50)
    await sbot.event(mention("<@UBOT> hi", ts="10.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")  # the answer only: nothing posted twice, no placeholder
    assert markdown_of(message) == "shown after all"
    assert (await queries.last_run(sbot.rt.db)).status == "ok"


async def test_slack_references_stay_readable(sbot: Bot, slack, llm) -> None:
    """Channels stay links; people are named without a ping; a link shows where it goes."""
    text = "Ask <@U2> in <#C2|random>, see <https://example.com/a?b=1|the doc> and `code`."
    llm.script(Reply(content=text))
    await sbot.event(mention("<@UBOT> who knows?", ts="11.1"))
    await sbot.idle()
    (message,) = slack.posted(channel="C1")
    assert markdown_of(message) == (
        f"Ask @{JOINER}bob in <#C2|random>, see the doc (https://example.com/a?b=1) and `code`."
    )
