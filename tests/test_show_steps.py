""" "Show steps" under answers: the run's trace for the clicker only, secrets and others' content hidden."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.db.models import Run, Step
from bot.slack.render import STEPS_ACTION
from bot.slack.steps_view import steps_text
from tests import queries
from tests.conftest import Bot, make_settings
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention


@pytest.fixture
async def wbot(slack, llm, db_url, weather) -> AsyncIterator[Bot]:
    settings = make_settings(
        slack,
        llm,
        db_url,
        OPEN_METEO_URL=weather.url,
        OPEN_METEO_GEOCODING_URL=weather.url,
        OPENAI_MODEL="gpt-4o",
    )
    harness = Bot(settings)
    await harness.start()
    yield harness
    await harness.close()


def steps_button(message: dict) -> dict:
    (button,) = [
        e
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == STEPS_ACTION
    ]
    return button


async def click(bot: Bot, slack, message: dict, user: str, channel: str = "C1") -> str:
    before = len(slack.ephemerals)
    button = steps_button(message)
    await bot.action(
        {"type": "button", "action_id": STEPS_ACTION, "value": button["value"], "text": button["text"]},
        user=user,
        channel=channel,
        message_ts=message["ts"],
        thread_ts=message.get("thread_ts"),
    )
    await bot.idle()
    (shown,) = slack.ephemerals[before:]
    assert shown["recipient"] == user
    assert slack.calls_to("chat.postEphemeral")[-1].params.get("thread_ts") == message.get("thread_ts")
    return shown["blocks"][0]["text"]


async def test_the_asker_sees_the_steps_of_a_tool_run(wbot: Bot, slack, llm) -> None:
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("get_weather", {"location": "Karachi", "days": 2}),
                ToolCall("call_api", {"url": "https://api.example.test/v1?key=sk-live-0123456789abcdef"}),
            ],
            usage=(1_000, 50),
        ),
        Reply(content="Warm in Karachi.", usage=(2_000, 20)),
    )
    await wbot.event(mention("<@UBOT> weather in Karachi?", ts="400.1"))
    await wbot.idle()
    (answer,) = slack.posted(channel="C1")
    shown = await click(wbot, slack, answer, "U1")
    run = (await queries.runs(wbot.rt.db))[-1]
    lines = shown.splitlines()
    assert lines[0].startswith(f"**Steps of run {run.id}** (mention · ok · ")
    assert (
        "`gpt-4o` · 2 model calls · 3,070 tokens · $0.0082)" in lines[0]
    )  # gpt-4o: $2.5 in, $10 out per million
    assert "model `gpt-4o`: 1,000 in + 50 out tokens" in lines[1]
    weather_line = next(line for line in lines if "`get_weather`" in line)
    assert '{"location": "Karachi", "days": 2}' in weather_line and " chars, " in weather_line
    api_line = next(line for line in lines if "`call_api`" in line)
    assert "sk-live" not in shown and "‹redacted›" in api_line
    assert "⚠" in lines[lines.index(api_line) + 1]  # the failed fetch shows its error
    assert "model `gpt-4o`: 2,000 in + 20 out tokens" in lines[-1]

    other = await click(wbot, slack, answer, "U2")  # someone else sees names and sizes only
    assert "Karachi" not in other and '"location": "‹7 chars›"' in other and "someone else asked" in other


async def test_a_forged_run_from_another_channel_shows_nothing(wbot: Bot, slack, llm) -> None:
    await wbot.event(mention("<@UBOT> hi", ts="410.1", channel="C2"))
    await wbot.idle()
    (answer,) = slack.posted(channel="C2")
    shown = await click(wbot, slack, answer, "U1", channel="C1")  # the button, replayed elsewhere
    assert shown == "I can't find the steps of that answer."


async def test_workflow_answers_show_their_steps_too(wbot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Sunny tomorrow."))
    await wbot.command("/weather", "Karachi", user="U1", channel="C1", response_url=slack.response_url())
    await wbot.idle()
    (answer,) = slack.posted(channel="C1")
    shown = await click(wbot, slack, answer, "U1")
    assert "(/weather · ok · " in shown and "`gpt-4o` · 1 model calls" in shown
    assert '1. tool `geocode` `{"location": "Karachi"}`' in shown and "model `summarize`" in shown


def test_limits_and_failures_are_named() -> None:
    run = Run(id=7, trigger="mention", status="limited", user_id="U1", error="8 tool steps", duration_ms=1500)
    steps = [
        Step(run_id=7, kind="tool", name="search_web", arguments="not json", error="boom Bearer abcdefghijk")
    ]
    text = steps_text(run, steps, viewer="U1")
    assert "**Limit hit:** 8 tool steps" in text and "no price for this model" in text
    assert "abcdefghijk" not in text and "Bearer ‹redacted›" in text
    assert "(no steps were recorded)" in steps_text(run, [], viewer="U1")
