"""Admins edit channel settings in the App Home tab: a modal per channel, through the front door."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.slack.listeners.home_settings import CALLBACK, PICK_CHANNEL, PICK_WORKSPACE
from tests.conftest import Bot
from tests.fakes.slack_requests import mention, view_submission_body


def home_opened(user: str) -> dict:
    return {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home", "event_ts": "1.1"}


def values(**given: str) -> dict:
    return {key: {key: {"type": "plain_text_input", "value": value}} for key, value in given.items()}


async def open_settings(bot: Bot, slack, user: str, channel: str | None) -> None:
    if channel is None:
        action = {
            "type": "button",
            "action_id": PICK_WORKSPACE,
            "value": "*",
            "text": {"type": "plain_text", "text": "x"},
        }
    else:
        action = {"type": "conversations_select", "action_id": PICK_CHANNEL, "selected_conversation": channel}
    await bot.action(action, user=user, channel="D1")
    await bot.idle()


async def submit(bot: Bot, user: str, scope: str, **given: str) -> tuple[int, str]:
    body = view_submission_body(
        CALLBACK, values(**given), private_metadata=json.dumps({"team": "T1", "scope": scope}), user=user
    )
    answer = await bot.post(body, "application/x-www-form-urlencoded")
    await bot.idle()
    return answer


async def test_only_admins_see_and_use_the_settings_section(bot: Bot, slack, llm) -> None:
    await bot.event(home_opened("UADMIN"))
    await bot.event(home_opened("U1"))
    await bot.idle()
    assert PICK_CHANNEL in json.dumps(slack.home_views["UADMIN"]["blocks"])
    assert PICK_CHANNEL not in json.dumps(slack.home_views["U1"]["blocks"])
    await open_settings(bot, slack, "U1", "C1")  # a replayed click by a non-admin opens nothing
    assert slack.opened == []
    status, text = await submit(bot, "U1", "C1", model="evil-model")  # nor does a forged submission
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    assert await bot.rt.db.channel_settings.rows("T1", "C1") == {}


async def test_an_admin_edits_a_channel_in_a_modal_and_runs_follow_it(bot: Bot, slack, llm) -> None:
    await bot.rt.db.channel_settings.write("T1", "C1", "model", "gpt-old", "UADMIN")
    await open_settings(bot, slack, "UADMIN", "C1")
    (modal,) = slack.opened
    assert modal["callback_id"] == CALLBACK and json.loads(modal["private_metadata"])["scope"] == "C1"
    shown = {
        b["block_id"]: b["element"].get("initial_value") for b in modal["blocks"] if b["type"] == "input"
    }
    assert shown["model"] == "gpt-old" and shown["prompt"] is None  # the current values

    status, text = await submit(
        bot, "UADMIN", "C1", model="gpt-from-home", prompt="Answer in French.", tools="except call_api"
    )
    assert status == 200 and not text.strip()  # an empty ack closes the modal
    assert await bot.rt.db.channel_settings.rows("T1", "C1") == {
        "model": "gpt-from-home",
        "prompt": "Answer in French.",
        "tools": "except call_api",
    }
    changes = await bot.rt.db.channel_settings.changes("T1")
    assert {(c.key, c.user_id) for c in changes[:3]} == {
        ("model", "UADMIN"),
        ("prompt", "UADMIN"),
        ("tools", "UADMIN"),
    }
    assert "UADMIN" in slack.home_views  # the Home tab was refreshed

    await bot.event(mention("<@UBOT> bonjour", ts="500.1"))
    await bot.idle()
    request = llm.requests[-1]
    assert request["model"] == "gpt-from-home" and "Answer in French." in request["messages"][0]["content"]
    assert "call_api" not in llm.tool_names_sent(-1)

    await submit(bot, "UADMIN", "C1", prompt="Answer in French.", tools="except call_api")
    assert "model" not in await bot.rt.db.channel_settings.rows("T1", "C1")  # emptied: unset


async def test_bad_values_are_shown_in_the_modal_and_nothing_is_saved(bot: Bot, slack) -> None:
    await open_settings(bot, slack, "UADMIN", None)  # the workspace's modal
    assert json.loads(slack.opened[-1]["private_metadata"])["scope"] == "*"
    status, text = await submit(
        bot, "UADMIN", "*", user_daily_tokens="lots", follow_ups="maybe", model="ok-model"
    )
    assert status == 200
    errors = json.loads(text)["errors"]
    assert (
        set(errors) == {"user_daily_tokens", "follow_ups"} and "whole number" in errors["user_daily_tokens"]
    )
    assert await bot.rt.db.channel_settings.rows("T1", "*") == {}


async def test_two_saves_of_one_setting_at_once_both_land(bot: Bot) -> None:
    """Found by tests/test_input_fuzz.py: a double-clicked Save inserted the same row twice."""
    writes = [bot.rt.db.channel_settings.write("T1", "C1", "model", f"m{i}", "UADMIN") for i in range(50)]
    await asyncio.gather(*writes)
    assert (await bot.rt.db.channel_settings.rows("T1", "C1"))["model"] in {f"m{i}" for i in range(50)}
    assert len(await bot.rt.db.channel_settings.changes("T1", limit=100)) == 50


@pytest.mark.parametrize(
    "metadata",
    [
        "[1, 2]",
        "null",
        "42",
        "not json",
        json.dumps({"team": "T1"}),
        json.dumps({"team": "T1", "scope": ["C1"]}),
        json.dumps({"team": "T1", "scope": ""}),
        json.dumps({"team": "T1", "scope": "C1; DROP"}),
        json.dumps({"team": "T1", "scope": "D1"}),  # a DM is no channel with settings
        json.dumps({"team": "T9", "scope": "C1"}),  # another workspace
    ],
)
async def test_a_submission_names_only_a_scope_its_submitter_may_change(bot: Bot, metadata: str) -> None:
    body = view_submission_body(CALLBACK, values(model="gpt-junk"), private_metadata=metadata, user="UADMIN")
    status, text = await bot.post(body, "application/x-www-form-urlencoded")
    await bot.idle()
    assert status == 200 and json.loads(text)["response_action"] == "errors"
    rows = await bot.rt.db.channel_settings.changes("T1") + await bot.rt.db.channel_settings.changes("T9")
    assert rows == []


@pytest.mark.parametrize("picked", ["", "C", "c1", "U1", "C1\n", "X" * 40])
async def test_a_picked_conversation_must_be_a_channel_id(bot: Bot, slack, picked: str) -> None:
    action = {"type": "conversations_select", "action_id": PICK_CHANNEL, "selected_conversation": picked}
    status, _ = await bot.action(action, user="UADMIN", channel="D1")
    await bot.idle()
    assert status == 200 and slack.opened == []
