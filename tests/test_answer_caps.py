"""Issue 11, item 2: an answer is bounded in Slack (length, number of messages) and a person's
runs in flight are bounded, through the running app and the fake Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.db.models import Run, utcnow
from bot.slack.render import answer_tag_of
from tests import queries
from tests.conftest import Bot, make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention


async def capped_bot(slack, llm, db_url, deadline: str) -> Bot:
    settings = make_settings(
        slack,
        llm,
        db_url,
        SLACK_MAX_MESSAGES_PER_ANSWER="2",
        ANSWER_MAX_CHARS="40000",
        USER_MAX_CONCURRENT_RUNS="1",
        AGENT_DEADLINE_SECONDS=deadline,
    )
    return await Bot(settings).start()


@pytest.fixture
async def capped(slack, llm, db_url) -> AsyncIterator[Bot]:
    """A deadline far above what a busy machine needs for these answers (a 1 s one failed there)."""
    harness = await capped_bot(slack, llm, db_url, "30")
    yield harness
    await harness.close()


@pytest.fixture
async def slotted(slack, llm, db_url) -> AsyncIterator[Bot]:
    """A short deadline: a question waiting for a slot gives up after it."""
    harness = await capped_bot(slack, llm, db_url, "2")
    yield harness
    await harness.close()


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


async def test_a_person_with_runs_in_flight_waits_then_is_told(slotted: Bot, slack, llm) -> None:
    llm.default = Reply(content="An answer.")
    async with slotted.rt.db.session() as s:  # U1 has a run in flight (in another process, say)
        s.add(Run(trigger="mention", team_id="T1", user_id="U1", status="running"))
        await s.commit()
    await slotted.event(mention("<@UBOT> one more thing", ts="4.1"))
    await slotted.idle(60)
    assert llm.requests == []
    (reply,) = slack.posted(channel="C1", thread_ts="4.1")
    assert "You already have 1 answer in progress" in reply["blocks"][0]["text"]
    assert [r.status for r in await queries.runs(slotted.rt.db)] == ["running", "refused"]

    # Someone else is not held up.
    await slotted.event(mention("<@UBOT> hello", ts="4.2", user="U2"))
    await slotted.idle(60)
    assert len(llm.requests) == 1


async def test_a_run_left_running_by_a_dead_process_does_not_hold_a_slot(capped: Bot, slack, llm) -> None:
    llm.default = Reply(content="An answer.")
    async with capped.rt.db.session() as s:  # older than any live run can be (2 x the deadline)
        s.add(
            Run(
                trigger="mention",
                team_id="T1",
                user_id="U1",
                status="running",
                started_at=utcnow() - timedelta(minutes=10),
            )
        )
        await s.commit()
    await capped.event(mention("<@UBOT> hello", ts="5.1"))
    await capped.idle()
    assert len(llm.requests) == 1
    assert "An answer." in slack.posted(channel="C1", thread_ts="5.1")[-1]["text"]
