"""Per-workspace and per-channel settings, set by admins with /switchboard config, read by every run."""

from __future__ import annotations

import pytest

from bot.controls.channel_config import WORKSPACE, ConfigUsageError, ToolChoice, combine, parse_config
from orchestrators.agent.loop import SYSTEM_PROMPT
from tests import queries
from tests.conftest import Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention, thread_message


async def config(bot: Bot, slack, text: str, user: str = "UADMIN", channel: str = "C1") -> str:
    """Run `/switchboard config <text>` through the front door; returns the private answer."""
    before = len(slack.responses)
    await bot.command(
        "/switchboard", f"config {text}", user=user, channel=channel, response_url=slack.response_url()
    )
    await bot.idle()
    (reply,) = slack.responses[before:]
    assert reply["response_type"] == "ephemeral"
    return reply["text"]


def system_prompt(request: dict) -> str:
    return request["messages"][0]["content"]


async def test_a_channels_prompt_and_model_reach_the_model(bot: Bot, slack, llm) -> None:
    assert "now `Answer like a pirate.`" in await config(bot, slack, "set prompt Answer like a pirate.")
    assert "now `gpt-test-channel`" in await config(bot, slack, "set model gpt-test-channel")
    await config(bot, slack, "set workspace prompt Our company is Acme.")
    await bot.event(mention("<@UBOT> hello", ts="200.1"))
    await bot.idle()
    request = llm.requests[-1]
    assert request["model"] == "gpt-test-channel"
    prompt = system_prompt(request)
    assert prompt.startswith(SYSTEM_PROMPT)  # ours first and whole: the safety rules stay
    assert prompt.index("Our company is Acme.") < prompt.index("Answer like a pirate.")
    run = (await queries.runs(bot.rt.db))[-1]
    assert run.model == "gpt-test-channel"

    await bot.event(mention("<@UBOT> hello", ts="201.1", channel="C2"))  # another channel
    await bot.idle()
    other = llm.requests[-1]
    assert other["model"] == bot.settings.openai_model
    assert "pirate" not in system_prompt(other) and "Acme" in system_prompt(other)

    await bot.command("/ask", "what now?", user="U1", channel="C1", response_url=slack.response_url())
    await bot.idle()
    assert llm.requests[-1]["model"] == "gpt-test-channel" and "pirate" in system_prompt(llm.requests[-1])


async def test_a_disabled_tool_is_not_offered(bot: Bot, slack, llm) -> None:
    await bot.event(mention("<@UBOT> first", ts="210.1"))
    await bot.idle()
    assert "call_api" in llm.tool_names_sent(-1)
    assert "now `except call_api,search_web`" in await config(
        bot, slack, "set tools except call_api, search_web"
    )
    await bot.event(mention("<@UBOT> second", ts="211.1"))
    await bot.idle()
    offered = llm.tool_names_sent(-1)
    assert "call_api" not in offered and "search_web" not in offered and "get_weather" in offered
    await config(bot, slack, "set tools only current_time")
    await bot.event(mention("<@UBOT> third", ts="212.1"))
    await bot.idle()
    assert llm.tool_names_sent(-1) == ["current_time"]


async def test_only_admins_change_settings_and_every_change_is_recorded(bot: Bot, slack) -> None:
    assert "Only workspace admins" in await config(bot, slack, "set model evil", user="U1")
    assert await bot.rt.db.channel_settings.rows("T1", "C1") == {}
    await config(bot, slack, "set model m1")
    await config(bot, slack, "set model m2")
    await config(bot, slack, "unset model")
    changes = await bot.rt.db.channel_settings.changes("T1")
    assert [(c.user_id, c.key, c.old_value, c.new_value) for c in changes] == [
        ("UADMIN", "model", "m2", None),
        ("UADMIN", "model", "m1", "m2"),
        ("UADMIN", "model", None, "m1"),
    ]
    history = await config(bot, slack, "history")
    assert "<@UADMIN>" in history and "`model`" in history and "UTC" in history
    shown = await config(bot, slack, "show")
    assert "`model`: _not set here_" in shown and f"model `{bot.settings.openai_model}`" in shown
    assert "Unknown setting `colour`" in await config(bot, slack, "set colour red")


async def test_follow_ups_off_means_only_mentions_are_answered(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="first answer"), Reply(content="second answer"))
    await bot.event(mention("<@UBOT> start", ts="220.1"))
    await bot.idle()
    await config(bot, slack, "set follow_ups off")
    await bot.event(thread_message("and then?", ts="220.2", thread_ts="220.1"))
    await bot.idle()
    assert len(llm.requests) == 1  # not answered without a mention
    await bot.event(mention("<@UBOT> and then?", ts="220.3", thread_ts="220.1"))
    await bot.idle()
    assert len(llm.requests) == 2


def test_the_config_grammar() -> None:
    assert parse_config("", "C1").action == "show"
    assert parse_config("set <#C9|ops> model gpt-x", "C1").scope == "C9"
    cmd = parse_config("set workspace prompt Be brief.  Really.", "C1")
    assert (cmd.scope, cmd.key, cmd.value) == (WORKSPACE, "prompt", "Be brief.  Really.")
    assert parse_config("set tools only a, b", "C1").value == "only a,b"
    for bad, message in [
        ("set", "Name a setting"),
        ("set model", "model name"),
        ("set follow_ups maybe", "on` or `off"),
        ("set user_daily_tokens lots", "whole number"),
        ("set tools some a", "only a,b"),
        ("show extra words", "Usage"),
    ]:
        with pytest.raises(ConfigUsageError, match=message):
            parse_config(bad, "C1")


def test_channel_values_win_and_prompts_add_up() -> None:
    eff = combine(
        [
            {"prompt": "A", "model": "m-ws", "user_daily_tokens": "100"},
            {"prompt": "B", "model": "m-ch", "follow_ups": "off"},
        ]
    )
    assert (eff.instructions, eff.model, eff.follow_ups, eff.user_daily_tokens) == (
        "A\n\nB",
        "m-ch",
        False,
        100,
    )
    assert ToolChoice.parse("except x").allows("y") and not ToolChoice.parse("only y").allows("x")
