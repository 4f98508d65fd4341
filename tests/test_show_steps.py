""" "Show steps" under answers: the run's trace for the clicker only, secrets and others' content hidden."""

from __future__ import annotations

import json
import time

import pytest

from bot.db.models import Run, Step
from bot.slack.output.render import STEPS_ACTION
from bot.slack.output.steps_view import steps_text
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention


@pytest.fixture
async def wbot(weather, make_bot: MakeBot) -> Bot:
    return await make_bot(weather=weather, OPENAI_MODEL="gpt-4o")


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

    # Someone else who reads #general may see what they could see anyway (the run read nothing
    # non-public): the values of the calls that went through, but not error texts or refused ones.
    other = await click(wbot, slack, answer, "U2")
    assert '{"location": "Karachi", "days": 2}' in other and "Error details are hidden" in other
    assert "sk-live" not in other and "api.example.test" not in other and "‹67 chars›" in other


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
    text = steps_text(run, steps, viewer="U1", known_tools={"search_web"})
    assert "**Limit hit:** 8 tool steps" in text and "no price for this model" in text
    assert "abcdefghijk" not in text and "Bearer ‹redacted›" in text
    assert "(no steps were recorded)" in steps_text(run, [], viewer="U1", known_tools=())


# Issue 23, item 4: a non-asker sees only what they could see; the clicker must read the channel.
SECRET = "the merger with Initech closes Friday"


def everything_sent(slack, since: tuple[int, int] = (0, 0)) -> str:
    """Every request the bot made to Slack (refused ones too) and every response_url body since."""
    return json.dumps([c.params for c in slack.calls[since[0] :]] + slack.responses[since[1] :])


def so_far(slack) -> tuple[int, int]:
    return len(slack.calls), len(slack.responses)


async def forged_click(bot: Bot, slack, run_id: int, user: str, channel: str, respond_to: str = "") -> None:
    """A signed click on the Show steps button of run `run_id`, as any member could send it."""
    await bot.action(
        {
            "type": "button",
            "action_id": STEPS_ACTION,
            "value": str(run_id),
            "text": {"type": "plain_text", "text": "Show steps"},
        },
        user=user,
        channel=channel,
        message_ts="1700000900.000100",
        response_url=slack.response_url(respond_to) if respond_to else None,
    )
    await bot.idle()


async def test_a_member_who_did_not_ask_sees_no_values_of_a_run_that_read_a_private_channel(
    wbot: Bot, slack, llm
) -> None:
    slack.add_channel("G1", "leadership", members=("U2",), is_private=True)
    slack.add_message("G1", "U2", SECRET, ts=f"{time.time() - 60:.6f}")
    llm.script(Reply(status=400, error_message=f"could not process the prompt: {SECRET}"))
    await wbot.command(
        "/summarize", "<#G1|leadership>", user="U2", channel="C1", response_url=slack.response_url("s")
    )
    await wbot.idle()
    run = (await queries.runs(wbot.rt.db))[-1]
    assert run.user_id == "U2" and SECRET in json.dumps(
        [s.error for s in await wbot.rt.db.runs.steps(run.id)]
    )

    before = so_far(slack)
    await forged_click(wbot, slack, run.id, "UADMIN", "C1")  # in #general, but not in #leadership
    (shown,) = [e for e in slack.ephemerals if e["recipient"] == "UADMIN"]
    text = shown["blocks"][0]["text"]
    assert "model `summarize`" in text  # the steps are told
    assert "⚠ failed" in text and "**Ended:** failed" in text  # the failure is told, without its text
    assert SECRET not in everything_sent(slack, before) and "Initech" not in everything_sent(slack, before)
    assert "G1" not in text and "leadership" not in text  # no argument values either


async def test_unknown_tool_names_and_error_values_are_hidden_from_others(wbot: Bot, slack, llm) -> None:
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("<!channel> urgent", {"the secret key": "<@U2> look"}),
                ToolCall("get_weather", {"location": "Karachi", "days": "the secret value"}),
                ToolCall("get_weather", {"location": "Lahore", "days": 1}),
                ToolCall("get_weather", {"location": "Karachi", "days": 2}),
            ]
        ),
        Reply(content="Done."),
    )
    await wbot.event(mention("<@UBOT> weather?", ts="420.1"))
    await wbot.idle()
    (answer,) = slack.posted(channel="C1")

    before = so_far(slack)
    other = await click(wbot, slack, answer, "U2")
    assert "`get_weather`" in other and "an unknown tool" in other
    assert "urgent" not in other and "channel" not in other.split("Steps of run")[1].split("\n", 1)[1]
    assert "the secret value" not in other and "the secret key" not in other and "Lahore" not in other
    assert "failed: invalid arguments" in other and "failed: no such tool" in other
    assert "<!channel>" not in everything_sent(slack, before)
    # The run read nothing non-public and U2 reads #general: a call that went through is shown.
    assert '"location": "Karachi", "days": 2' in other

    mine = await click(wbot, slack, answer, "U1")  # the asker sees values and the name, defused
    assert "the secret value" in mine and "the secret key" in mine and "Lahore" in mine and "urgent" in mine
    assert "<!channel>" not in everything_sent(slack, before) and "<@U2>" not in everything_sent(
        slack, before
    )


async def test_a_clicker_who_cannot_read_the_channel_gets_a_refusal_and_nothing_of_the_run(
    wbot: Bot, slack, llm
) -> None:
    slack.add_channel("G1", "leadership", members=("U1", "U2"), is_private=True)
    llm.script(
        Reply(tool_calls=[ToolCall("get_weather", {"location": SECRET})]),
        Reply(content="Done."),
    )
    await wbot.event(mention("<@UBOT> weather at the merger?", channel="G1", ts="430.1"))
    await wbot.idle()
    run = (await queries.runs(wbot.rt.db))[-1]
    assert run.channel_id == "G1"

    before = so_far(slack)
    await forged_click(wbot, slack, run.id, "UADMIN", "G1", respond_to="steps")
    sent = everything_sent(slack, before)
    assert SECRET not in sent and "get_weather" not in sent and f"run {run.id}" not in sent
    (refusal,) = slack.responses[before[1] :]
    assert refusal["response_type"] == "ephemeral" and "can't read" in refusal["text"]
