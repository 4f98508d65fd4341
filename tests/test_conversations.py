"""Issue 2: mentions, DMs and thread follow-ups answered once, in the right thread, with history."""

from __future__ import annotations

import asyncio

from bot.db.models import Run
from tests import queries
from tests.conftest import SIGNING_SECRET, Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import dm, mention, thread_message


def user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


async def test_mention_is_answered_in_its_thread(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Hello **there**"))
    status, _ = await bot.event(mention("<@UBOT> hi bot", ts="100.1"))
    assert status == 200
    await bot.idle()
    posted = slack.posted(channel="C1")
    assert len(posted) == 1
    assert posted[0]["thread_ts"] == "100.1"
    assert "Hello **there**" in str(posted[0]["blocks"])
    request = llm.requests[0]
    assert request["messages"][0]["role"] == "system"
    assert "Slack" in request["messages"][0]["content"]
    assert user_texts(request) == ["hi bot"]  # the bot's own mention is removed


async def test_ack_comes_before_the_slow_answer(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="slow answer", delay=1.0))
    status, _ = await bot.event(mention("<@UBOT> take your time", ts="100.2"))
    assert status == 200
    assert "slow answer" not in str(slack.posted(channel="C1"))  # acked while the model thinks
    await bot.idle()
    assert len(slack.posted(channel="C1")) == 1


async def test_follow_up_in_thread_without_mention_keeps_history(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Karachi is warm."), Reply(content="Berlin is cold."))
    await bot.event(mention("<@UBOT> weather in Karachi?", ts="200.1"))
    await bot.idle()
    await bot.event(thread_message("and Berlin?", ts="200.5", thread_ts="200.1"))
    await bot.idle()
    second = llm.requests[1]["messages"]
    assert [m["content"] for m in second[1:]] == ["weather in Karachi?", "Karachi is warm.", "and Berlin?"]
    assert [p["thread_ts"] for p in slack.posted(channel="C1")] == ["200.1", "200.1"]


async def test_thread_without_the_bot_is_ignored(bot: Bot, slack, llm) -> None:
    await bot.event(thread_message("people talking", ts="300.5", thread_ts="300.1"))
    await bot.event(thread_message("top level chatter", ts="300.6"))
    await bot.idle()
    assert llm.requests == [] and slack.posted() == []


async def test_two_threads_never_see_each_other(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="A1"), Reply(content="B1"), Reply(content="A2"))
    await bot.event(mention("<@UBOT> secret plan alpha", ts="400.1"))
    await bot.idle()
    await bot.event(mention("<@UBOT> unrelated beta", ts="401.1", user="U2"))
    await bot.idle()
    await bot.event(thread_message("more alpha", ts="400.9", thread_ts="400.1"))
    await bot.idle()
    beta = str(llm.requests[1]["messages"])
    assert "alpha" not in beta and "A1" not in beta
    alpha = str(llm.requests[2]["messages"])
    assert "beta" not in alpha and "B1" not in alpha and "secret plan alpha" in alpha


async def test_dm_is_answered_top_level_with_history(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="first"), Reply(content="second"))
    await bot.event(dm("hello", ts="500.1"))
    await bot.idle()
    await bot.event(dm("again", ts="500.2"))
    await bot.idle()
    posted = slack.posted(channel="D1")
    assert [p["text"] for p in posted] == ["first", "second"]
    assert all(not p.get("thread_ts") for p in posted)
    assert user_texts(llm.requests[1]) == ["hello", "again"]


async def test_ignored_messages(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="answer"))
    await bot.event(mention("<@UBOT> start", ts="600.1"))
    await bot.idle()
    base = thread_message("x", ts="600.3", thread_ts="600.1")
    ignored = [
        {**base, "user": "UBOT", "ts": "600.4"},  # the bot itself
        {**base, "bot_id": "BOTHER", "ts": "600.5"},  # another bot
        {**base, "subtype": "message_changed", "ts": "600.6"},
        {**base, "subtype": "message_deleted", "ts": "600.7"},
        {**base, "subtype": "channel_join", "ts": "600.8"},
        {**dm("bot dm", ts="600.9"), "bot_id": "BBOT"},
    ]
    for event in ignored:
        assert (await bot.event(event))[0] == 200
    await bot.idle()
    assert len(llm.requests) == 1
    assert len(slack.posted()) == 1


async def test_mention_in_known_thread_answered_once(bot: Bot, slack, llm) -> None:
    """Slack sends both app_mention and message for one message: one answer."""
    llm.script(Reply(content="one"), Reply(content="two"))
    await bot.event(mention("<@UBOT> start", ts="700.1"))
    await bot.idle()
    again = mention("<@UBOT> follow", ts="700.2", thread_ts="700.1")
    await bot.event(again)
    await bot.event({**thread_message("<@UBOT> follow", ts="700.2", thread_ts="700.1")})
    await bot.idle()
    assert len(llm.requests) == 2
    assert len(slack.posted()) == 2


async def test_retries_never_answer_twice_even_after_restart(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="once", delay=0.3))
    event = mention("<@UBOT> hi", ts="800.1")
    await bot.event(event, event_id="Ev1")
    await bot.event(event, event_id="Ev1", retry_num=1)
    await bot.idle()
    await bot.restart()
    await bot.event(event, event_id="Ev1", retry_num=2)
    await bot.idle()
    assert len(llm.requests) == 1
    assert len(slack.posted()) == 1


async def test_bad_signature_and_stale_timestamp_are_401(bot: Bot, llm) -> None:
    from tests.fakes.slack_requests import event_body, post_signed

    body = event_body(mention("<@UBOT> hi", ts="900.1"))
    url = f"{bot.url}/slack/events"
    status, _ = await post_signed(bot.http, url, body, "wrong-secret", content_type="application/json")
    assert status == 401
    stale = await post_signed(
        bot.http, url, body, SIGNING_SECRET, content_type="application/json", timestamp=1_000_000_000
    )
    assert stale[0] == 401
    async with bot.http.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 401
    await asyncio.sleep(0.05)
    assert llm.requests == []


async def test_llm_failure_apologises_with_run_reference(bot: Bot, slack, llm) -> None:
    llm.script(Reply(status=500, error_message="upstream exploded"))
    await bot.event(mention("<@UBOT> hi", ts="1000.1"))
    await bot.idle()
    (posted,) = slack.posted(channel="C1")
    runs = await queries.runs(bot.rt.db)
    assert runs[-1].status == "failed" and "exploded" in (runs[-1].error or "")
    assert f"run {runs[-1].id}" in posted["text"] and "Sorry" in posted["text"]
    assert posted["thread_ts"] == "1000.1"


async def test_restart_keeps_history(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="noted: the code word is heron"), Reply(content="heron"))
    await bot.event(mention("<@UBOT> remember heron", ts="1100.1"))
    await bot.idle()
    await bot.restart()
    await bot.event(thread_message("what was the word?", ts="1100.3", thread_ts="1100.1"))
    await bot.idle()
    assert "noted: the code word is heron" in str(llm.requests[1]["messages"])
    assert len(slack.posted(channel="C1")) == 2


async def test_runs_record_model_and_tokens(bot: Bot, llm) -> None:
    llm.script(Reply(content="ok", usage=(120, 30)))
    await bot.event(mention("<@UBOT> count tokens", ts="1200.1"))
    await bot.idle()
    run = await queries.last_run(bot.rt.db)
    assert isinstance(run, Run)
    assert (run.status, run.trigger, run.prompt_tokens, run.completion_tokens) == ("ok", "mention", 120, 30)
    assert run.model and run.duration_ms is not None and run.answer_ts
    steps = await queries.steps(bot.rt.db, run.id)
    assert [s.kind for s in steps] == ["model"]


async def test_without_a_model_the_bot_says_so(slack, make_bot: MakeBot) -> None:
    harness = await make_bot(llm=None)
    await harness.event(mention("<@UBOT> hi", ts="1300.1"))
    await harness.idle()
    (posted,) = slack.posted(channel="C1")
    assert "No language model is configured" in str(posted["blocks"])


async def test_healthz(bot: Bot) -> None:
    async with bot.http.get(f"{bot.url}/healthz") as r:
        assert r.status == 200
        assert (await r.json())["ok"] is True


async def test_shutdown_lets_answers_in_flight_finish(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="finished before exit", delay=0.5))
    await bot.event(mention("<@UBOT> slow one", ts="1400.1"))
    await llm.wait_for_requests(1)
    store = bot.rt.db
    await bot.stop()
    assert len(slack.posted(channel="C1")) == 1
    bot.running = None
    await bot.start()
    assert (await queries.last_run(bot.rt.db)).status == "ok"
    del store


async def test_shutdown_records_unfinished_runs_as_interrupted(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="too late", delay=3.0))
    await bot.event(mention("<@UBOT> very slow", ts="1500.1"))
    await llm.wait_for_requests(1)  # the run is under way (a sleep was not enough on a busy machine)
    await bot.running.stop(drain=0.2)
    bot.running = None
    await bot.start()
    assert (await queries.last_run(bot.rt.db)).status == "interrupted"


async def test_shutdown_leaves_other_processes_runs_alone(bot: Bot, slack, llm) -> None:
    """Two processes share one database: stopping one must not mark the other's runs."""
    from bot.db import Database

    other = Database(bot.settings.database_url)
    foreign = await other.runs.start("mention")
    await bot.stop()
    bot.running = None
    await bot.start()
    assert (await queries.run(bot.rt.db, foreign.id)).status == "running"
    await other.close()


async def test_llm_timeout_apologises(slack, llm, make_bot: MakeBot) -> None:
    harness = await make_bot(LLM_TIMEOUT="0.3")
    llm.script(Reply(content="too slow", delay=1.5))
    await harness.event(mention("<@UBOT> hi", ts="1600.1"))
    await harness.idle()
    (posted,) = slack.posted(channel="C1")
    run = await queries.last_run(harness.rt.db)
    assert run.status == "failed" and "timed out" in run.error
    assert f"run {run.id}" in posted["text"] and "too slow" not in str(posted)
