"""Issue 11, item 5: hostile command input gets a reply and stores nothing it cannot hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.db.models import Message, Run
from bot.digests.grammar import next_fire_times, parse_digest, previous_fire_time
from bot.settings import ConfigError, load_settings
from orchestrators.workflows.arguments import UsageError
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import block_actions_body, mention
from tests.test_digest import digest


@pytest.fixture
async def dbot(make_bot: MakeBot, slack) -> Bot:
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    return await make_bot(RUN_SCHEDULER="true", scheduler={"retry_delay": 0})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('add <#C3|support-digest> cron "0 9 * * 8"', "`8` is not a day of the week"),
        ('add <#C3|support-digest> cron "0 0 31 2,4,6,9,11 *"', "never fires within a year"),
        ('add <#C3|support-digest> cron "0 0 30 2 *"', "never fires within a year"),
        (
            "add <#C3|support-digest> cron " + '"' + "0 " + ",".join(["1"] * 60) + ' * * *"',
            "keep it under 100",
        ),
        ("run 9223372036854775808", "takes one schedule id"),
        ("remove 2147483648", "takes one schedule id"),
        ("run ４", "takes one schedule id"),  # a full-width digit is a digit to str.isdigit()
    ],
)
async def test_hostile_digest_input_is_answered_and_not_stored(dbot: Bot, slack, text, expected) -> None:
    reply = await digest(dbot, slack, text)
    assert expected in reply and "e.g." in reply
    assert await dbot.rt.db.digests.all() == []


async def test_a_stored_schedule_that_never_fires_does_not_break_list_or_start(dbot: Bot, slack) -> None:
    """Rows written before schedules were checked: /digest list still answers, start still works."""
    await dbot.rt.db.digests.add(
        team_id="T1",
        channel_id="C3",
        source_channel_id="C3",
        cron="0 0 31 2,4,6,9,11 *",
        timezone="UTC",
        description="never",
        creator_id="U1",
    )
    await dbot.rt.digest_scheduler.sync()
    assert dbot.rt.digest_scheduler.next_run(1) is None
    listed = await digest(dbot, slack, "list", channel="C3")
    assert "*1*" in listed and "never (this schedule cannot fire" in listed
    await dbot.restart()  # catch-up at start and the sync both skip it
    assert "*1*" in await digest(dbot, slack, "list", channel="C3")


def test_cron_day_numbers_keep_their_steps() -> None:
    assert parse_digest('add #d cron "0 9 * * */2"').cron == "0 9 * * */2"
    assert parse_digest('add #d cron "0 9 * * 0,6"').cron == "0 9 * * sun,sat"
    with pytest.raises(UsageError, match="`10` is not a day"):
        parse_digest('add #d cron "0 9 * * 1-10"')


def test_searches_for_impossible_dates_are_bounded() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert next_fire_times("0 0 31 2 *", "UTC", at, 3) == []
    assert previous_fire_time("0 0 31 2 *", "UTC", at) is None


def test_a_model_name_longer_than_its_column_is_refused_at_start() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s" * 20, "OPENAI_MODEL": "m" * 101}
    with pytest.raises(ConfigError, match="OPENAI_MODEL must be at most 100"):
        load_settings(env)


async def test_strings_longer_than_their_column_are_cut_not_refused(bot: Bot) -> None:
    run = await bot.rt.db.runs.start("mention", model="m" * 300, channel_id="C" * 50)
    stored = await queries.run(bot.rt.db, run.id)
    assert isinstance(stored, Run)
    assert len(stored.model) == Run.model_fields["model"].metadata[0].max_length == 100
    assert len(stored.channel_id) == 32


async def test_a_megabyte_tool_argument_is_not_stored_or_logged_whole(bot: Bot, slack, llm, caplog) -> None:
    caplog.set_level("INFO")
    huge = {"location": "K" * 1_000_000}
    long_id = "call_" + "x" * 200
    llm.script(Reply(tool_calls=[ToolCall("get_weather", huge, id=long_id)]), Reply(content="done"))
    await bot.event(mention("<@UBOT> weather", ts="5.1"))
    await bot.idle()
    assert "done" in json.dumps(slack.posted(channel="C1"))
    async with bot.rt.db.session() as s:
        from sqlmodel import select

        rows = list((await s.exec(select(Message))).all())
    sizes = [len(r.tool_calls or "") + len(r.content or "") for r in rows]
    assert max(sizes) < 20_000
    (call,) = json.loads(next(r.tool_calls for r in rows if r.tool_calls))
    (result,) = [r for r in rows if r.role == "tool"]
    assert call["id"] == result.tool_call_id and len(result.tool_call_id) <= 64
    steps = await queries.steps(bot.rt.db, 1)
    assert all(len(s.arguments or "") <= 4_000 for s in steps)
    assert max(len(r.getMessage()) for r in caplog.records) < 10_000
    # the conversation continues: the history replays with the shortened id on both sides
    llm.script(Reply(content="again"))
    from tests.fakes.slack_requests import thread_message

    await bot.event(thread_message("and tomorrow?", ts="5.5", thread_ts="5.1"))
    await bot.idle()
    assert "again" in json.dumps(slack.posted(channel="C1"))


async def test_feedback_with_an_out_of_range_run_id_is_ignored(bot: Bot, slack, caplog) -> None:
    body = block_actions_body({"action_id": "answer_feedback", "value": "good:9223372036854775808"})
    status, _ = await bot.post(body, "application/x-www-form-urlencoded")
    await bot.idle()
    assert status == 200 and slack.ephemerals == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_server_that_ignores_the_output_cap_is_cut_off(bot: Bot, slack, llm) -> None:
    """A hostile endpoint streams 2 MB of text: the bot stops reading, says so, posts a bounded answer."""
    llm.script(Reply(content="spam " * 400_000))
    await bot.event(mention("<@UBOT> say a little", ts="6.1"))
    await bot.idle()
    posted = slack.posted(channel="C1")
    assert 1 <= len(posted) <= 10  # read at most 4x the output cap, split into a few messages
    assert "cut off" in json.dumps(posted[-1])
    body = llm.requests[0]
    assert body.get("max_completion_tokens") or body.get("max_tokens")
    (run,) = await queries.runs(bot.rt.db)
    assert run.status in ("ok", "limited"), run.error
    async with bot.rt.db.session() as s:
        from sqlmodel import select

        rows = list((await s.exec(select(Message).where(Message.role == "assistant"))).all())
    assert rows and max(len(r.content or "") for r in rows) < 100_000
