"""Issue 24 items 4 and 5: Slack's refusals told truthfully, and no answer lost to a placeholder
that cannot be edited. Everything goes through the HTTP front door against the fake Slack, which
refuses as Slack documents it: `{"ok": false, "error": "<code>"}` (the Errors table of each method
at docs.slack.dev/reference/methods/chat.postMessage, chat.update, chat.delete), in the field
shape of Slack's published captures (tests/fixtures/slack/api/, java-slack-sdk json-logs)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bot.slack.output.refusals import CONTENT, EDIT, OTHER, REFUSALS, WHERE, refusal_of
from bot.slack.output.surface import ANSWER_BELOW, PLAIN_CHARS
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import mention
from tests.fakes.slack_rules import shape_errors
from tests.test_answers import markdown_of

CHANNEL_REFUSALS = [
    ("not_in_channel", "Invite me"),
    ("is_archived", "archived"),
    ("channel_not_found", "I can't see it"),
    ("restricted_action", "workspace setting"),
    ("ekm_access_denied", "Enterprise Key Management"),
    ("team_access_not_granted", "granted access"),
]


@pytest.fixture
async def rbot(weather, make_bot: MakeBot) -> Bot:
    return await make_bot(weather=weather, STREAM_UPDATE_SECONDS="0.05")


async def ask(bot: Bot, slack: FakeSlack, text: str = "<@UBOT> hi") -> str:
    ts = slack.add_message("C1", "U1", text)
    await bot.event(mention(text, ts=ts))
    await bot.idle()
    return ts


def everything_said(slack: FakeSlack) -> str:
    return json.dumps([slack.posted(), slack.ephemerals, slack.responses])


def dm_to(slack: FakeSlack, user: str) -> list[dict]:
    return slack.posted(channel=f"D{user}")


# --- the table and the fake's refusals --------------------------------------------------------


def test_every_refusal_has_a_kind_and_words_and_unknown_codes_are_told_as_slack_said() -> None:
    from slack_sdk.errors import SlackApiError

    for code, words in CHANNEL_REFUSALS:
        assert REFUSALS[code][0] == WHERE and words in REFUSALS[code][1]
    assert {REFUSALS[c][0] for c in ("msg_too_long", "invalid_blocks")} == {CONTENT}
    assert {REFUSALS[c][0] for c in ("cant_update_message", "edit_window_closed")} == {EDIT}
    other = refusal_of(SlackApiError("x", {"ok": False, "error": "something_new"}))
    assert (other.kind, other.meaning) == (OTHER, "Slack answered `something_new`")


async def test_the_fake_refuses_in_slacks_documented_shape(slack: FakeSlack) -> None:
    codes = [c for c, _ in CHANNEL_REFUSALS] + ["msg_too_long", "invalid_blocks", "cant_update_message"]
    headers = {"Authorization": "Bearer xoxb-test"}
    async with aiohttp.ClientSession() as http:
        for code in codes:
            for method in ("chat.postMessage", "chat.update"):
                slack.fail_next(method, error=code)
                async with http.post(
                    f"{slack.api_url}{method}", json={"channel": "C1"}, headers=headers
                ) as r:
                    body = await r.json()
                assert (r.status, body) == (200, {"ok": False, "error": code})
                assert shape_errors(method, body) == []  # Slack's capture has exactly these fields
        slack.refuse_writes("C2", "is_archived")
        async with http.post(
            f"{slack.api_url}chat.postEphemeral",
            json={"channel": "C2", "user": "U1", "text": "x"},
            headers=headers,
        ) as r:
            assert await r.json() == {"ok": False, "error": "is_archived"}


# --- item 4: truthful failure -------------------------------------------------------------------


@pytest.mark.parametrize("code", ["msg_too_long", "invalid_blocks"])
async def test_a_first_post_refused_for_its_content_is_retried_plainer_once(
    rbot: Bot, slack, llm, code: str
) -> None:
    slack.fail_next("chat.postMessage", error=code)
    llm.script(Reply(content="Here is **the** answer."))
    root = await ask(rbot, slack)
    (message,) = slack.posted(channel="C1", thread_ts=root)
    assert markdown_of(message) == "Here is **the** answer."
    first, retry = slack.calls_to("chat.postMessage")[:2]
    assert "blocks" not in retry.params and retry.params["text"] == first.params["text"]
    assert (await queries.last_run(rbot.rt.db)).status == "ok"
    assert "language model" not in everything_said(slack)


@pytest.mark.parametrize("code", ["msg_too_long", "invalid_blocks"])
async def test_an_answer_refused_for_its_content_is_shown_as_plain_text_in_smaller_pieces(
    rbot: Bot, slack, llm, code: str
) -> None:
    """Every post carrying blocks is refused: the answer arrives whole as plain text pieces."""
    answer = "\n\n".join(f"Paragraph {i}: " + "word " * 400 for i in range(5))  # ~10,000 characters
    slack.fail_next("chat.postMessage", error=code, times=99, when=lambda p: bool(p.get("blocks")))
    llm.script(Reply(content=answer))
    await rbot.command("/ask", "tell me a lot", response_url=slack.response_url("ask"))
    await rbot.idle()
    pieces = slack.posted(channel="C1")
    assert len(pieces) >= 3 and all(not m.get("blocks") and len(m["text"]) <= PLAIN_CHARS for m in pieces)
    shown = " ".join(" ".join(m["text"] for m in pieces).split())
    assert shown.endswith(" ".join(answer.split()))  # whole, after /ask's quote of the question
    assert slack.responses == []  # nothing needed saying privately


@pytest.mark.parametrize(("code", "words"), CHANNEL_REFUSALS)
async def test_a_channel_refusing_every_write_is_explained_to_the_asker_by_dm(
    rbot: Bot, slack, llm, code: str, words: str
) -> None:
    if code == "not_in_channel":
        slack.channels["C1"].members.discard("UBOT")  # as Slack has it: the bot was removed
    else:
        slack.refuse_writes("C1", code)  # ephemeral messages there are refused too
    llm.script(Reply(content="unused"))
    await ask(rbot, slack)
    (note,) = dm_to(slack, "U1")
    assert "<#C1>" in note["text"] and words in note["text"]
    run = await queries.last_run(rbot.rt.db)
    assert run.status == "failed" and run.error == f"Slack said {code}"
    assert "language model" not in everything_said(slack)
    assert llm.requests == []  # nothing could be shown: the model was not asked


async def test_when_the_channel_still_takes_ephemerals_the_asker_is_told_there(rbot: Bot, slack, llm) -> None:
    slack.fail_next(
        "chat.postMessage", error="restricted_action", times=10, when=lambda p: p["channel"] == "C1"
    )
    llm.script(Reply(content="unused"))
    root = await ask(rbot, slack)
    (note,) = slack.ephemerals
    assert (note["recipient"], note["channel"]) == ("U1", "C1")
    assert slack.calls_to("chat.postEphemeral")[0].params["thread_ts"] == root  # in the asker's thread
    assert "workspace setting" in note["text"] and dm_to(slack, "U1") == []


async def test_a_channel_archived_while_answering_sends_the_answer_to_the_asker(
    rbot: Bot, slack, llm
) -> None:
    def archive_after_placeholder(method: str, params: dict) -> None:
        if method == "chat.postMessage" and params.get("channel") == "C1":
            slack.refuse_writes("C1", "is_archived")

    slack.after_applied.append(archive_after_placeholder)
    llm.script(Reply(content="The answer nobody else will see."))
    await ask(rbot, slack)
    note, answer = dm_to(slack, "U1")
    assert "archived" in note["text"] and "Here is my answer" in note["text"]
    assert markdown_of(answer) == "The answer nobody else will see."
    run = await queries.last_run(rbot.rt.db)
    assert run.status == "failed" and run.error == "posting the answer failed: Slack said is_archived"


@pytest.mark.parametrize(
    ("command", "text", "code", "words"),
    [
        ("/weather", "Karachi", "is_archived", "archived"),
        ("/ask", "what is up?", "restricted_action", "workspace setting"),
        ("/ask", "what is up?", "ekm_access_denied", "Enterprise Key Management"),
    ],
)
async def test_a_command_result_refused_by_the_channel_reaches_the_asker(
    rbot: Bot, slack, llm, command: str, text: str, code: str, words: str
) -> None:
    slack.refuse_writes("C1", code)
    llm.script(Reply(content="Sunny in Karachi, and all is well."))
    await rbot.command(command, text, response_url=slack.response_url("cmd"))
    await rbot.idle()
    (reply,) = slack.responses
    assert reply["response_type"] == "ephemeral"
    assert "Sunny in Karachi" in reply["text"] and words in reply["text"] and "<#C1>" in reply["text"]
    assert slack.posted(channel="C1") == []


# --- item 5: no lost answers --------------------------------------------------------------------


@pytest.mark.parametrize("code", ["cant_update_message", "edit_window_closed", "msg_too_long"])
async def test_a_placeholder_that_refuses_every_edit_gives_way_to_a_new_message(
    rbot: Bot, slack, llm, code: str
) -> None:
    slack.fail_next("chat.update", error=code, times=99)
    llm.script(Reply(content="The answer, not lost.", stream_delay=0.01))
    root = await ask(rbot, slack)
    (message,) = slack.posted(channel="C1", thread_ts=root)  # the placeholder was deleted
    assert markdown_of(message) == "The answer, not lost."
    assert len(slack.calls_to("chat.delete")) == 1
    assert len(slack.calls_to("chat.update")) == 1  # a refused edit is not tried again
    assert (await queries.last_run(rbot.rt.db)).status == "ok"


async def test_when_delete_is_refused_too_the_placeholder_points_at_the_answer(rbot: Bot, slack, llm) -> None:
    """Slack refuses the answer as an edit (too long) and the delete; a short edit still passes."""
    slack.fail_next("chat.update", error="msg_too_long", times=99, when=lambda p: bool(p.get("blocks")))
    slack.fail_next("chat.delete", error="cant_delete_message", times=9)
    llm.script(Reply(content="The answer, below the placeholder."))
    root = await ask(rbot, slack)
    placeholder, message = slack.posted(channel="C1", thread_ts=root)
    assert placeholder["text"] == ANSWER_BELOW
    assert markdown_of(message) == "The answer, below the placeholder."


async def test_when_every_edit_and_delete_is_refused_the_answer_still_appears(rbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.update", error="edit_window_closed", times=99)
    slack.fail_next("chat.delete", error="cant_delete_message", times=9)
    llm.script(Reply(content="Here all the same."))
    root = await ask(rbot, slack)
    placeholder, message = slack.posted(channel="C1", thread_ts=root)
    assert placeholder["text"] == "_Thinking…_"  # Slack would not let it change or go
    assert markdown_of(message) == "Here all the same."
    assert len(slack.calls_to("chat.update")) == 2  # the answer once, the pointer once


async def test_a_persistent_500_on_edits_is_tried_a_bounded_number_of_times(rbot: Bot, slack, llm) -> None:
    slack.fail_next("chat.update", status=500, error="internal_error", times=99)
    llm.script(Reply(content="Through the outage.", stream_delay=0.01))
    root = await ask(rbot, slack)
    (message,) = slack.posted(channel="C1", thread_ts=root)
    assert markdown_of(message) == "Through the outage."
    assert len(slack.calls_to("chat.update")) == 3  # the client's own two retries, then the fallback
    assert (await queries.last_run(rbot.rt.db)).status == "ok"


async def test_only_a_model_failure_blames_the_model(rbot: Bot, slack, llm) -> None:
    llm.script(Reply(status=500, error_message="overloaded"))
    root = await ask(rbot, slack)
    (message,) = slack.posted(channel="C1", thread_ts=root)
    assert "language model" in message["text"] and "run 1" in message["text"]
    assert slack.ephemerals == [] and dm_to(slack, "U1") == []
