"""Issue 5: slash commands run fixed workflows over the shared tools, traced like agent runs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from sqlmodel import update

from bot.db.models import Job
from bot.db.queue.jobs import NewJob
from bot.work import MAX_ATTEMPTS
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.search import FakeSearxng
from tests.fakes.slack_requests import mention
from tests.fakes.weather import FakeOpenMeteo
from tests.fakes.web import FakeWeb


def dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenMeteo, FakeSearxng, FakeWeb]]:
    meteo, searx, web = FakeOpenMeteo(), FakeSearxng(), FakeWeb()
    for f in (meteo, searx, web):
        await f.start()
    yield meteo, searx, web
    for f in (meteo, searx, web):
        await f.stop()


def fake_urls(fakes) -> dict[str, str]:
    meteo, searx, web = fakes
    return {
        "OPEN_METEO_URL": meteo.url,
        "OPEN_METEO_GEOCODING_URL": meteo.url,
        "SEARXNG_URL": searx.url,
        "TOOL_HTTP_ALLOW_HOSTS": f"127.0.0.1:{web.port}",
    }


@pytest.fixture
async def cbot(fakes, make_bot: MakeBot) -> Bot:
    return await make_bot(**fake_urls(fakes))


async def steps_of_last_run(bot: Bot) -> list[tuple[str, str]]:
    run = await queries.last_run(bot.rt.db)
    return [(s.kind, s.name) for s in await queries.steps(bot.rt.db, run.id)]


async def test_weather_acks_then_posts_with_footer(cbot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Sunny and warm tomorrow; bring water.", delay=0.3))
    status, body = await cbot.command("/weather", "Karachi", response_url=slack.response_url("w"))
    assert status == 200
    ack = json.loads(body)
    assert ack["response_type"] == "ephemeral" and "Working on it" in ack["text"]
    assert slack.posted(channel="C1") == []  # the ack came before the work
    await cbot.idle()
    (posted,) = slack.posted(channel="C1")
    text = dump(posted["blocks"])
    assert "Sunny and warm" in text and "Karachi, Pakistan" in text
    assert "weather_report" in text and " s · run " in text  # footer: workflow and duration
    assert await steps_of_last_run(cbot) == [
        ("tool", "geocode"),
        ("tool", "get_forecast"),
        ("model", "summarize"),
        ("tool", "summarize"),
    ]
    (request,) = llm.requests
    assert "tools" not in request


async def test_weather_unknown_place_tells_the_user_and_skips_the_llm(cbot: Bot, slack, llm) -> None:
    await cbot.command("/weather", "Atlantis", response_url=slack.response_url("w"))
    await cbot.idle()
    assert llm.requests == [] and slack.posted() == []
    (reply,) = slack.responses
    assert reply["response_type"] == "ephemeral" and "No place called 'Atlantis'" in reply["text"]
    assert (await queries.last_run(cbot.rt.db)).status == "failed"


@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/weather", "", "Usage: `/weather <place>`"),
        ("/weather", "   12345 ", "Usage: `/weather <place>`"),
        ("/summarize", "#general yesterday", "don't understand `yesterday`"),
        ("/summarize", "400d", "between 1 minute and 90 days"),
        ("/research", "", "Usage: `/research <question>`"),
        ("/ask", "x" * 2500, "keep it under 2000"),
        ("/switchboard", "help", "/weather"),
    ],
)
async def test_bad_arguments_get_usage_and_no_work(cbot: Bot, slack, llm, command, text, expected) -> None:
    status, body = await cbot.command(command, text)
    assert status == 200
    ack = json.loads(body)
    assert ack["response_type"] == "ephemeral" and expected in ack["text"]
    await cbot.idle()
    assert llm.requests == [] and slack.posted() == [] and await queries.runs(cbot.rt.db) == []


async def test_weather_without_a_model_posts_the_forecast(slack, fakes, make_bot: MakeBot) -> None:
    harness = await make_bot(llm=None, **fake_urls(fakes))
    await harness.command("/weather", "Berlin")
    await harness.idle()
    (posted,) = slack.posted(channel="C1")
    text = dump(posted["blocks"])
    assert "Weather for Berlin, Germany" in text and "| day | sky |" in text
    assert await steps_of_last_run(harness) == [("tool", "geocode"), ("tool", "get_forecast")]


async def test_summarize_reads_every_page_and_thread(cbot: Bot, slack, llm) -> None:
    start = time.time() - 20 * 3600
    stamps = slack.seed_messages("C2", 450, start_ts=start, step=60, text="note {i} on the launch")
    for i in range(3):
        slack.add_message("C2", "U2", f"reply {i} in the big thread", thread_ts=stamps[10])
    slack.add_message("C2", "U1", "too old to count", ts=f"{time.time() - 3 * 86400:.6f}")
    llm.script(Reply(content="The team discussed the launch."))
    await cbot.command("/summarize", "<#C2|random> 24h")
    await cbot.idle()
    history_calls = slack.calls_to("conversations.history")
    assert len(history_calls) >= 1 and all(c.params["channel"] == "C2" for c in history_calls)
    (request,) = llm.requests
    assert "tools" not in request
    prompt = request["messages"][-1]["content"]
    assert "note 0 on the launch" in prompt and "note 449 on the launch" in prompt
    assert "reply 2 in the big thread" in prompt and "too old to count" not in prompt
    assert "alice" in prompt and "bob" in prompt  # who said what
    (posted,) = slack.posted(channel="C1")
    text = dump(posted["blocks"])
    assert "453 messages" in text and "Threads worth reading" in text and "archives/C2/p" in text


async def test_summarize_pages_through_a_small_page_size(cbot: Bot, slack, llm, monkeypatch) -> None:
    """The reader follows cursors: Slack's page size is not a cap on what gets summarized."""
    from tests.fakes import slack_api

    original = slack_api._page
    monkeypatch.setattr(
        slack_api, "_page", lambda items, params, default=100: original(items, {**params, "limit": 100})
    )
    slack.seed_messages("C2", 450, start_ts=time.time() - 20 * 3600, step=60, text="m{i}")
    await cbot.command("/summarize", "<#C2|random>")
    await cbot.idle()
    assert len(slack.calls_to("conversations.history")) == 5
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "m0" in prompt and "m449" in prompt


async def test_summarize_long_period_in_chunks_then_combined(cbot: Bot, slack, llm, monkeypatch) -> None:
    from orchestrators.workflows import channel_summary as wf

    monkeypatch.setattr(wf, "CHUNK_CHARS", 2_000)
    monkeypatch.setattr(wf, "MAX_CHUNKS", 4)
    slack.seed_messages("C2", 300, start_ts=time.time() - 10 * 3600, step=60, text="update {i} " + "x" * 40)
    await cbot.command("/summarize", "<#C2|random> 12h")
    await cbot.idle()
    assert len(llm.requests) == 5  # four chunks, then one call that combines them
    assert all("tools" not in r for r in llm.requests)
    assert "Part 4:" in llm.requests[-1]["messages"][-1]["content"]
    assert "update 299" in llm.requests[3]["messages"][-1]["content"]  # the newest part is covered
    text = dump(slack.posted(channel="C1")[0]["blocks"])
    assert "too long to cover fully" in text


async def test_summarize_refuses_channels_the_user_is_not_in(cbot: Bot, slack, llm) -> None:
    slack.add_channel("G1", "leadership", members=("U2",), is_private=True)
    slack.add_message("G1", "U2", "confidential")
    await cbot.command("/summarize", "<#G1|leadership>", user="U1", response_url=slack.response_url("s"))
    await cbot.idle()
    assert llm.requests == [] and slack.posted() == []
    assert "not a member of #leadership" in slack.responses[0]["text"]
    assert not slack.calls_to("conversations.history")


async def test_research_reads_pages_concurrently_and_cites(cbot: Bot, slack, llm, fakes) -> None:
    _, searx, web = fakes
    web.delay = 0.2
    searx.default = [
        {"title": f"Page {n}", "url": f"{web.url}/page/{n}", "content": f"snippet {n}"}
        for n in ("a", "b", "c")
    ] + [{"title": "Metadata", "url": "http://169.254.169.254/", "content": "nope"}]
    llm.script(Reply(content="Python 3.14 changed things [1][2]."))
    await cbot.command("/research", "what changed in Python 3.14?")
    await cbot.idle()
    assert searx.queries == ["what changed in Python 3.14?"]
    assert web.max_in_flight >= 2  # the pages were fetched at the same time
    prompt = llm.requests[0]["messages"][-1]["content"]
    assert "Page a says hello" in prompt and "[3] Page c" in prompt
    text = dump(slack.posted(channel="C1")[0]["blocks"])
    assert f"{web.url}/page/a" in text and "Sources" in text
    steps = await steps_of_last_run(cbot)
    assert steps[0] == ("tool", "search_web") and steps.count(("tool", "call_api")) == 3


async def test_ask_runs_the_llm_orchestrator_and_follow_ups_continue(cbot: Bot, slack, llm) -> None:
    llm.script(Reply(content="It is 09:00 in Tokyo."), Reply(content="Still morning."))
    await cbot.command("/ask", "what time is it in Tokyo?")
    await cbot.idle()
    (posted,) = slack.posted(channel="C1")
    assert "09:00 in Tokyo" in dump(posted["blocks"])
    assert llm.requests[0]["tools"]  # the agent, with its tools
    from tests.fakes.slack_requests import thread_message

    await cbot.event(thread_message("and now?", ts="9999.1", thread_ts=posted["ts"]))
    await cbot.idle()
    assert "what time is it in Tokyo?" in dump(llm.requests[1]["messages"])


async def test_workflows_are_offered_to_the_model_as_tools(cbot: Bot, slack, llm) -> None:
    llm.script(
        Reply(tool_calls=[ToolCall("weather_report", {"place": "Tokyo"})]),
        Reply(content="Tokyo: mild."),  # the workflow's own summarize call
        Reply(content="The pipeline says Tokyo is mild."),
    )
    await cbot.event(mention("<@UBOT> weather in Tokyo?", ts="77.1"))
    await cbot.idle()
    assert "weather_report" in llm.tool_names_sent(0)
    assert "tools" not in llm.requests[1]
    assert "Tokyo: mild." in dump(llm.requests[2]["messages"])


async def test_result_goes_ephemeral_when_the_bot_is_not_in_the_channel(cbot: Bot, slack, llm) -> None:
    slack.add_channel("C9", "elsewhere", members=("U1",), bot_member=False)
    llm.script(Reply(content="Nice weather."))
    await cbot.command("/weather", "Berlin", channel="C9", response_url=slack.response_url("x"))
    await cbot.idle()
    (reply,) = slack.responses
    assert "Nice weather." in reply["text"] and "/invite @Switchboard" in reply["text"]


async def test_a_command_whose_process_died_every_time_is_given_up_and_says_so(bot: Bot, slack, llm) -> None:
    body = {
        "command": "/ask",
        "text": "poison",
        "user_id": "U1",
        "channel_id": "C1",
        "team_id": "T1",
        "response_url": slack.response_url("poison"),
        "_switchboard_kind": "workflow",
    }
    await bot.rt.work.stop(drain=1)  # recorded while no process claims work
    [(job, _)] = await bot.rt.db.jobs.add([NewJob("command", "command:trigger-poison", body)])
    async with bot.rt.db.session() as s:  # its process died on every attempt so far
        await s.exec(
            update(Job).values(state="running", attempts=MAX_ATTEMPTS, owner="dead", lease_expires=0)
        )
        await s.commit()
    await bot.rt.work.start()
    await bot.idle()
    assert llm.requests == [] and slack.posted(channel="C1") == []
    (reply,) = slack.responses
    assert "restarted several times while working on `/ask` and gave up" in reply["text"]
    assert (await bot.rt.db.jobs.states([job]))[job] == "interrupted"
