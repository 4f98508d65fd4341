"""Issue 11, item 2: an answer is bounded in Slack (length, number of messages) and a person's
runs in flight are bounded, through the running app and the fake Slack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.slack.output.render import answer_tag_of
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention

CAPS = {"SLACK_MAX_MESSAGES_PER_ANSWER": "2", "ANSWER_MAX_CHARS": "40000", "USER_MAX_CONCURRENT_RUNS": "1"}


@pytest.fixture
async def capped(make_bot: MakeBot) -> Bot:
    """A deadline far above what a busy machine needs for these answers (a 1 s one failed there)."""
    return await make_bot(**CAPS, AGENT_DEADLINE_SECONDS="30")


def long_answer(parts: int) -> str:
    """`parts` paragraphs of about 10 kB: one Slack message each."""
    return "\n\n".join(f"Paragraph {i}. " + "word " * 2_000 for i in range(parts))


async def test_past_the_message_cap_the_whole_answer_is_attached_as_a_file(capped: Bot, slack, llm) -> None:
    text = long_answer(3)
    llm.default = Reply(content=text)
    await capped.event(mention("<@UBOT> tell me everything", ts="1.1"))
    await capped.idle()
    thread = slack.posted(channel="C1", thread_ts="1.1")
    shown, upload = [m for m in thread if not m.get("files")], [m for m in thread if m.get("files")]
    assert len(shown) == 2  # the cap, not the three parts
    assert shown[0]["text"].startswith("Paragraph 0.")
    note = shown[1]["blocks"][0]["text"]
    assert "3 messages long, more than the 2" in note and "answer.md" in note
    assert any(b["type"] == "actions" for b in shown[1]["blocks"])  # feedback stays under the answer
    (file,) = upload[0]["files"]
    assert file["name"] == "answer.md"
    assert slack.files[file["id"]][1].decode() == text  # the whole answer, nothing lost
    assert [answer_tag_of(m)[1] for m in shown] == [False, True]  # final once all is shown


async def test_a_long_command_result_is_capped_the_same_way(capped: Bot, slack, llm) -> None:
    text = long_answer(3)
    llm.default = Reply(content=text)
    await capped.command("/ask", "tell me everything")
    await capped.idle()
    posted = slack.posted(channel="C1")
    shown = [m for m in posted if not m.get("files")]
    assert len(shown) == 2 and "answer.md" in shown[1]["blocks"][0]["text"]
    (file,) = next(m for m in posted if m.get("files"))["files"]
    assert slack.files[file["id"]][1].decode() == f"> tell me everything\n\n{text}"  # question quoted
    assert [answer_tag_of(m)[1] for m in shown] == [False, True]


async def test_a_failed_attachment_is_said_in_the_thread(capped: Bot, slack, llm) -> None:
    slack.scopes = slack.scopes - {"files:write"}
    llm.default = Reply(content=long_answer(3))
    await capped.event(mention("<@UBOT> everything again", ts="2.1"))
    await capped.idle()
    last = slack.posted(channel="C1", thread_ts="2.1")[-1]
    assert "could not attach answer.md" in last["text"] and "missing_scope" in last["text"]
    assert answer_tag_of(last)[1] is True


async def test_an_answer_longer_than_the_cap_is_cut_and_says_so(capped: Bot, slack, llm) -> None:
    llm.default = Reply(content="x" * 50_000)
    await capped.event(mention("<@UBOT> ramble", ts="3.1"))
    await capped.idle()
    thread = slack.posted(channel="C1", thread_ts="3.1")
    (file,) = next(m for m in thread if m.get("files"))["files"]
    whole = slack.files[file["id"]][1].decode()  # 40,000 characters is four messages: attached
    assert whole.count("x") == 40_000
    assert whole.endswith("_(The answer was cut here: it was longer than 40,000 characters.)_")


async def test_a_person_over_the_slot_cap_waits_in_line_and_others_do_not(capped: Bot, slack, llm) -> None:
    """USER_MAX_CONCURRENT_RUNS=1: U1's second question starts when the first ends (no refusal,
    no polling: the finish wakes it), and U2 is not held up behind U1."""
    hello_asked = asyncio.Event()
    seen_when_two_started: list[str] = []

    async def respond(body: dict[str, Any]) -> Reply:
        question = body["messages"][-1]["content"]
        if question == "hello":
            hello_asked.set()
        if question == "one":
            await asyncio.wait_for(hello_asked.wait(), 60)  # U2 gets in while U1's slot is taken
        if question == "two":
            seen_when_two_started.extend(m["text"] for m in slack.posted(channel="C1"))
        return Reply(content=f"answer to {question}")

    llm.responder = respond
    await capped.event(mention("<@UBOT> one", ts="4.1"))
    await capped.event(mention("<@UBOT> two", ts="4.2"))
    await capped.event(mention("<@UBOT> hello", ts="4.3", user="U2"))
    await capped.idle(60)
    asked = [r["messages"][-1]["content"] for r in llm.requests]
    assert sorted(asked[:2]) == ["hello", "one"] and asked[2] == "two"
    assert "answer to one" in seen_when_two_started  # U1's first had finished before the second began
    for ts, question in (("4.1", "one"), ("4.2", "two"), ("4.3", "hello")):
        assert slack.posted(channel="C1", thread_ts=ts)[-1]["text"].startswith(f"answer to {question}")
