"""The Home tab's recent runs, thread summaries (shortcut and /summarize in a thread), privacy."""

from __future__ import annotations

import re

from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_captures import interactivity_bytes, load, to_test_world
from tests.fakes.slack_requests import dm, mention

SHORTCUT = "interactivity/bolt-python.test_shortcut.message_shortcut_body.json"


def home_opened(user: str = "U1") -> dict:
    return {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home", "event_ts": "1.1"}


async def test_home_lists_the_users_recent_runs(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="one"), Reply(content="two"))
    await bot.event(dm("first question"))
    await bot.idle()
    await bot.event(mention("<@UBOT> second question"))
    await bot.idle()
    await bot.event(home_opened())
    await bot.idle()
    text = str(slack.home_views["U1"]["blocks"])
    runs = await bot.rt.db.runs.recent("U1")
    assert [r.trigger for r in runs] == ["mention", "dm"]  # newest first
    assert f"run {runs[0].id}" in text and f"run {runs[1].id}" in text and "<#C1>" in text
    await bot.event(home_opened("U2"))  # someone else sees their own (empty) list
    await bot.idle()
    assert "Nothing yet" in str(slack.home_views["U2"]["blocks"]) and f"run {runs[0].id}" not in str(
        slack.home_views["U2"]["blocks"]
    )


async def test_home_sections_can_be_added(bot: Bot, slack, llm) -> None:
    from bot.slack.listeners import home

    async def settings_section(rt, user):
        return [{"type": "section", "text": {"type": "mrkdwn", "text": f"*Settings* for {user}"}}]

    home.SECTIONS.append(settings_section)
    try:
        await bot.event(home_opened())
        await bot.idle()
    finally:
        home.SECTIONS.remove(settings_section)
    assert "*Settings* for U1" in str(slack.home_views["U1"]["blocks"])


def shortcut_on(slack, root: str, user: str, channel: str = "C1") -> bytes:
    payload = to_test_world(
        load(SHORTCUT), {"W111": user, "W222": "UBOT", "test-shortcut": "summarize_thread", "C111": channel}
    )
    payload["message_ts"] = payload["message"]["ts"] = root
    payload["response_url"] = slack.response_url("shortcut")
    return interactivity_bytes(payload)


async def test_shortcut_on_a_reply_summarizes_the_whole_thread(bot: Bot, slack, llm) -> None:
    root = slack.add_message("C1", "U1", "Where do we hold the offsite?")
    reply = slack.add_message("C1", "U2", "Lisbon, in June", thread_ts=root)
    body = load(SHORTCUT)
    llm.script(Reply(content="- Offsite: Lisbon in June"))
    payload = to_test_world(body, {"W111": "U1", "W222": "UBOT", "test-shortcut": "summarize_thread"})
    payload["message_ts"] = reply
    payload["message"] |= {"ts": reply, "thread_ts": root}
    status, _ = await bot.post(interactivity_bytes(payload), "application/x-www-form-urlencoded")
    await bot.idle()
    assert status == 200
    (summary,) = slack.ephemerals
    assert summary["recipient"] == "U1" and "Lisbon" in summary["text"]
    seen = str(llm.requests[0]["messages"])
    assert "Where do we hold the offsite?" in seen and "Lisbon, in June" in seen
    (run,) = await queries.runs(bot.rt.db, trigger="shortcut")
    assert run.status == "ok" and run.thread_ts == root


async def test_shortcut_obeys_the_membership_rule(bot: Bot, slack, llm) -> None:
    slack.add_channel("G1", "leadership", members=("U2",), is_private=True)
    root = slack.add_message("G1", "U2", "the secret plan")
    await bot.post(shortcut_on(slack, root, "U1", channel="G1"), "application/x-www-form-urlencoded")
    await bot.idle()
    assert llm.requests == []
    texts = [e["text"] for e in slack.ephemerals] + [r.get("text", "") for r in slack.responses]
    assert any("not a member" in t for t in texts) and not any("secret plan" in t for t in texts)


async def test_summarize_inside_a_thread_summarizes_that_thread(bot: Bot, slack, llm) -> None:
    root = slack.add_message("C1", "U1", "Which database for the new service?")
    slack.add_message("C1", "U2", "Postgres, we already run it", thread_ts=root)
    llm.script(Reply(content="- Postgres chosen"))
    status, body = await bot.command("/summarize", "", thread_ts=root, response_url=slack.response_url())
    await bot.idle()
    assert status == 200 and "summarize_thread" in body
    (posted,) = slack.posted(channel="C1", thread_ts=root)
    assert "Postgres chosen" in posted["text"] and "Thread summary" in posted["text"]
    assert "Which database" in str(llm.requests[0]["messages"])


async def test_assistant_panel_summary_of_a_channel_the_user_cannot_read_is_refused(
    bot: Bot, slack, llm
) -> None:
    slack.add_channel("G7", "board", members=("U2",), is_private=True)
    slack.add_message("G7", "U2", "board-only numbers")
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1", "channel_id": "D1", "thread_ts": "70.1",
            "context": {"channel_id": "G7", "team_id": "T1", "enterprise_id": None},
        },
        "event_ts": "70.2",
    }  # fmt: skip
    await bot.event(started)
    await bot.idle()
    llm.script(
        Reply(tool_calls=[ToolCall("read_channel", {"channel": "G7", "since": "24h"})]),
        Reply(content="I can't read that channel for you."),
    )
    await bot.event(dm("summarize this channel", thread_ts="70.1", ts="70.3"))
    await bot.idle()
    assert "<#G7>" in str(llm.requests[0]["messages"])  # the panel's channel is "this channel"
    tool_result = str(llm.requests[1]["messages"][-1])
    assert "not a member" in tool_result and "board-only numbers" not in tool_result


async def test_a_thread_too_long_to_summarize_whole_keeps_its_newest_part_and_says_so(
    bot: Bot, slack, llm
) -> None:
    """Issue 24: on a 10,000-reply thread the oldest 5,000 replies were kept and the newest half,
    usually the conclusion, was dropped without a word."""
    root = slack.add_message("C1", "U1", "Which launch date do we pick?", ts="1700000000.000100")
    slack.seed_replies("C1", root, 10_000)
    slack.add_message("C1", "U2", "Decided: we launch on Friday", thread_ts=root)
    status, _ = await bot.command("/summarize", "", thread_ts=root, response_url=slack.response_url())
    await bot.idle(timeout=60)
    assert status == 200
    seen = "\n".join(str(r["messages"]) for r in llm.requests)
    assert "Decided: we launch on Friday" in seen  # the newest reply
    assert "Which launch date do we pick?" in seen  # the topic
    kept = {int(n) for n in re.findall(r"reply number (\d+)", seen)}
    assert kept == set(range(5001, 10_000))  # the newest 5,000 replies (with the one above), no older
    (posted,) = slack.posted(channel="C1", thread_ts=root)
    assert "10,001 replies" in posted["text"]
    assert (
        "too long to summarize whole" in posted["text"]
        and "5,001 older replies were left out" in posted["text"]
    )


async def test_a_thread_over_the_token_budget_keeps_its_topic_and_newest_replies(
    slack, llm, make_bot: MakeBot
) -> None:
    """Within memory but over SUMMARIZE_TOKEN_BUDGET: the newest chunk plus the first message."""
    bot = await make_bot(SUMMARIZE_TOKEN_BUDGET="10000")
    root = slack.add_message("C1", "U1", "Where does the offsite go?", ts="1700000000.000100")
    slack.seed_replies("C1", root, 3_000)
    slack.add_message("C1", "U2", "Final answer: Lisbon", thread_ts=root)
    await bot.command("/summarize", "", thread_ts=root, response_url=slack.response_url())
    await bot.idle(timeout=60)
    (request,) = llm.requests  # one chunk fits the budget: one model call
    seen = str(request["messages"])
    assert "Where does the offsite go?" in seen and "Final answer: Lisbon" in seen
    assert not re.search(r"reply number 0\b", seen) and "reply number 2999" in seen
    (posted,) = slack.posted(channel="C1", thread_ts=root)
    assert "older replies were left out" in posted["text"] and "3,001 replies" in posted["text"]
