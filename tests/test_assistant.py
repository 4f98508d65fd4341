"""Issue 4: the assistant side panel greets with prompts and answers through the same orchestrator."""

from __future__ import annotations

from tests import queries
from tests.conftest import Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import dm


def thread_started(channel: str = "D1", thread_ts: str = "50.1", user: str = "U1") -> dict:
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "channel_id": channel,
            "thread_ts": thread_ts,
            "context": {"channel_id": "C1", "team_id": "T1", "enterprise_id": None},
        },
        "event_ts": "50.2",
    }


async def test_thread_start_greets_with_suggested_prompts(bot: Bot, slack, llm) -> None:
    await bot.event(thread_started())
    await bot.idle()
    (greeting,) = slack.posted(channel="D1")
    assert greeting["thread_ts"] == "50.1" and "Switchboard" in greeting["text"]
    (call,) = slack.calls_to("assistant.threads.setSuggestedPrompts")
    prompts = call.params["prompts"]
    assert call.params["thread_ts"] == "50.1" and len(prompts) == 4  # Slack's maximum
    titles = " ".join(p["title"] + " " + p["message"] for p in prompts)
    for kind in ("weather", "web", "page", "this channel"):
        assert kind.lower() in titles.lower()
    assert llm.requests == []


async def test_assistant_message_gets_a_title_and_one_answer(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Here you go."), Reply(content="And more."))
    await bot.event(dm("What's the weather like in Karachi tomorrow, roughly?", ts="60.2", thread_ts="60.1"))
    await bot.idle()
    await bot.event(dm("thanks, and Berlin?", ts="60.3", thread_ts="60.1"))
    await bot.idle()
    assert len(llm.requests) == 2  # the assistant middleware answered; the DM path did not as well
    titles = [c.params["title"] for c in slack.calls_to("assistant.threads.setTitle")]
    assert titles == ["What's the weather like in Karachi tomorrow, roughly?"]  # first question only
    assert [m["text"] for m in slack.posted(channel="D1")] == ["Here you go.", "And more."]
    assert "What's the weather" in str(llm.requests[1]["messages"])  # same conversation
    run = await queries.last_run(bot.rt.db)
    assert run.trigger == "assistant" and run.status == "ok"


async def test_assistant_retries_are_answered_once(bot: Bot, slack, llm) -> None:
    event = dm("hello", ts="70.2", thread_ts="70.1")
    await bot.event(event, event_id="EvA")
    await bot.event(event, event_id="EvA", retry_num=1)
    await bot.idle()
    assert len(llm.requests) == 1
