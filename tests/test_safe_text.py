"""Issue 10 finding 5 and issue 23: text the bot did not write notifies nobody, disguises no link
and unfurls nothing, on every path that reaches Slack (bot/slack/output/safe_text.py)."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

from bot.slack.output.safe_text import JOINER, CleanWebClient, neutralize, neutralize_blocks, stable_prefix
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import dm, mention
from tests.test_digest import an_hour_ahead, digest
from tests.test_files import shared

LOUD = "Heads up <!channel> and <!here|here>, <!everyone>, <!subteam^S0ENG|@eng> and @here, ping <@U2>"
LIVE = ("<!channel", "<!here", "<!everyone", "<!subteam", " @here", "<@U2")
PHISH = "<https://evil.example/x|Click to verify>"
HOSTILE_FILE = "<!channel> <!here> <https://evil.example/phish|Click to verify>"
LIVE_LINKS = ("|Click", "[Click")


def test_neutralize_keeps_the_words_and_drops_the_broadcast() -> None:
    quiet = neutralize(LOUD, {"U2": "bob"})
    assert quiet.replace(JOINER, "") == "Heads up @channel and @here, @everyone, @eng and @here, ping @bob"
    assert not any(token in quiet for token in LIVE)
    assert neutralize("mail me at bob@here.com or <!date^1392734382^{date}|Feb 18>") == (
        "mail me at bob@here.com or <!date^1392734382^{date}|Feb 18>"
    )
    blocks = neutralize_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": "<!here> hi"}}])
    assert blocks[0]["text"]["text"] == f"@{JOINER}here hi"


def test_people_are_named_without_a_ping_where_others_see_the_post() -> None:
    assert neutralize("ask <@U2> or <@U9|carol> or <@W7>", {"U2": "bob"}).replace(JOINER, "") == (
        "ask @bob or @carol or @W7"
    )
    assert neutralize("ask <@U2>") == "ask <@U2>"  # ephemeral: seen by one person, pings nobody


def test_links_show_where_they_go() -> None:
    assert neutralize(PHISH) == "Click to verify (https://evil.example/x)"
    assert (
        neutralize("[Click to verify](https://evil.example/x)") == "Click to verify (https://evil.example/x)"
    )
    assert (
        neutralize('![logo [v2]](<https://evil.example/a b> "t")') == "logo [v2] (https://evil.example/a b)"
    )
    assert neutralize("<https://a.example|https://a.example> and <https://b.example>") == (
        "https://a.example and <https://b.example>"
    )
    reference = neutralize("[Click to verify][1]\n\n[1]: https://evil.example/x")
    assert reference == "[Click to verify][1]\n\n[1] : https://evil.example/x"  # no longer a link
    assert neutralize("see <#C2|random> and `a[0](x)`") == "see <#C2|random> and `a[0](x)`"
    once = neutralize(f"{LOUD} {PHISH} [x](https://y.example)", {"U2": "bob"})
    assert neutralize(once, {}) == once  # cleaning clean text changes nothing


def test_streaming_never_cuts_a_mention_or_a_link_in_half() -> None:
    assert stable_prefix("hello <!chan") == len("hello ")
    assert stable_prefix("hello @he") == len("hello ")
    assert stable_prefix("hello <!channel> done") == len("hello <!channel> done")
    assert stable_prefix("see <https://evil.example|Click to") == len("see ")
    assert stable_prefix("see [Click to verify](https://evil.exa") == len("see ")
    assert stable_prefix("see [Click to verify]") == len("see ")
    assert stable_prefix("a[0] is the first") == len("a[0] is the first")


def assert_quiet(posted: list[dict]) -> None:
    text = json.dumps(posted, ensure_ascii=False)
    assert posted and "@\u2060channel" in text and "@\u2060bob" in text
    assert not any(token in text for token in LIVE), text


async def test_model_text_is_defused_in_a_channel_thread(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content=LOUD))
    await bot.event(mention("<@UBOT> tell <!here> the news", ts="1700000900.000100"))
    await bot.idle()
    assert_quiet(slack.posted(channel="C1"))
    user = [m for m in llm.requests[0]["messages"] if m["role"] == "user"]
    assert user[-1]["content"] == "tell <!here> the news"  # a person's own words are not altered


async def test_model_text_is_defused_when_streamed_natively(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content=f"{LOUD} {PHISH} " * 3, stream_delay=0.02))
    await bot.event(dm("news?", ts="1700000901.000200", thread_ts="1700000901.000100"))
    await bot.idle()
    appended = "".join(c.params.get("markdown_text", "") for c in slack.calls if "Stream" in c.method)
    assert appended and not any(token in appended for token in LIVE + LIVE_LINKS)
    assert_quiet(slack.posted(channel="D1"))


async def test_an_answer_shows_no_live_broadcast_or_disguised_link(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content=f"Done <!here>: {PHISH} or [Click to verify](https://evil.example/y)"))
    await bot.event(mention("<@UBOT> status?", ts="1700000902.000100"))
    await bot.idle()
    (answer,) = slack.posted(channel="C1")
    sent = [c.params for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    shown = json.dumps([answer, *sent], ensure_ascii=False)
    assert "<!here" not in shown and not any(token in shown for token in LIVE_LINKS), shown
    assert "Click to verify (https://evil.example/x)" in shown


async def test_an_invented_tool_name_in_the_status_line_notifies_nobody(bot: Bot, slack, llm) -> None:
    llm.script(Reply(tool_calls=[ToolCall(f"<!channel> urgent {PHISH}")]), Reply(content="done"))
    await bot.event(mention("<@UBOT> go", ts="1700000903.000100"))
    await bot.idle()
    statuses = [c.params.get("text", "") for c in slack.calls_to("chat.update")]
    assert "_Running a tool…_" in statuses  # a name the model made up is not repeated at all
    assert all("<!channel" not in s and "urgent" not in s and "|Click" not in s for s in statuses), statuses
    assert neutralize(f"<!channel> urgent {PHISH}").startswith(f"@{JOINER}channel urgent")  # had it been


async def test_a_hostile_file_name_comes_back_quiet(bot: Bot, slack, llm) -> None:
    doc = slack.add_file(HOSTILE_FILE, b"PK\x03\x04 not really a docx", "application/msword")
    await bot.event(shared(mention("<@UBOT>", ts="1700000904.000100"), doc))
    await bot.idle()
    (notice,) = [m for m in slack.posted(channel="C1") if "About the files" in m["text"]]
    assert "<!channel" not in notice["text"] and "<!here" not in notice["text"], notice["text"]
    assert "|Click" not in notice["text"] and "Click to verify (https://evil.example/phish)" in notice["text"]


async def test_a_digest_summary_is_quiet(make_bot: MakeBot, slack, llm) -> None:
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    slack.seed_messages("C2", 3, start_ts=time.time() - 3600, step=60, text="ticket {i}")
    harness = await make_bot(scheduler={"retry_delay": 0})
    try:
        await digest(
            harness, slack, f"add <#C3|support-digest> daily {an_hour_ahead()} UTC from <#C2|random>"
        )
        llm.script(Reply(content=f"<!channel> <@U2> says {PHISH}"))
        assert "posted" in await digest(harness, slack, "run 1")
    finally:
        await harness.close()
    shown = json.dumps(slack.posted(channel="C3"), ensure_ascii=False)
    assert "<!channel" not in shown and "<@U2" not in shown and "|Click" not in shown, shown
    assert f"@{JOINER}bob says Click to verify (https://evil.example/x)" in shown


async def test_no_post_unfurls_by_default(make_bot: MakeBot, slack, llm) -> None:
    """Mentions, a DM, /ask and a digest: every chat.postMessage asks Slack not to unfurl."""
    slack.add_channel("C3", "support-digest", members=("U1", "U2"))
    harness = await make_bot(scheduler={"retry_delay": 0})
    assert isinstance(harness.rt.slack, CleanWebClient)  # the client every post of the process uses
    secret = "See https://evil.example/leak?key=s3cret"
    try:
        llm.script(*[Reply(content=secret) for _ in range(4)])
        await harness.event(mention("<@UBOT> a", ts="1700000905.000100"))
        await harness.event(dm("b", ts="1700000906.000100"))
        await harness.event(dm("c", ts="1700000907.000200", thread_ts="1700000907.000100"))
        await harness.command("/ask", "what is the key?", response_url=slack.response_url("ask"))
        await harness.idle()
        await digest(
            harness, slack, f"add <#C3|support-digest> daily {an_hour_ahead()} UTC from <#C2|random>"
        )
        slack.seed_messages("C2", 2, start_ts=time.time() - 600, step=60, text="ticket {i}")
        llm.script(Reply(content=secret))
        assert "posted" in await digest(harness, slack, "run 1")
    finally:
        await harness.close()
    assert {u["channel"] for u in slack.unfurls} >= {"C1", "D1", "C3"}, slack.unfurls
    assert {u["channel"] for u in slack.unfurls if "s3cret" in u["text"]} >= {"C1", "C3"}  # /ask, digest
    assert slack.unfurls and all(
        u["unfurl_links"] is False and u["unfurl_media"] is False for u in slack.unfurls
    )


async def test_the_operator_may_let_public_channels_unfurl(make_bot: MakeBot, slack, llm) -> None:
    slack.add_channel("G1", "leadership", members=("U1",), is_private=True)
    harness = await make_bot(SLACK_UNFURL_LINKS="true")
    try:
        llm.script(*[Reply(content="See https://example.com/docs") for _ in range(2)])
        await harness.command("/ask", "docs?", response_url=slack.response_url("ask"))
        await harness.command("/ask", "docs?", channel="G1", response_url=slack.response_url("ask"))
        await harness.idle()
    finally:
        await harness.close()
    flags = {u["channel"]: u["unfurl_links"] for u in slack.unfurls if "example.com" in u["text"]}
    assert flags == {"C1": True, "G1": False}


# Bolt hands listeners these by name; they post through a client Bolt builds per request, which
# would skip the clean-up. Listeners post through rt.slack (or `respond`) instead.
BOLT_POSTERS = {"say", "say_stream", "set_status", "set_title", "set_suggested_prompts", "client", "context"}


def test_listeners_post_through_the_cleaning_client() -> None:
    listeners = Path(__file__).resolve().parents[1] / "bot" / "slack" / "listeners"
    for path in listeners.rglob("*.py"):  # listeners/clicks/ too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                taken = {a.arg for a in node.args.args + node.args.kwonlyargs} & BOLT_POSTERS
                assert not taken, f"{path.name}: {node.name} takes {taken}: post through rt.slack"


async def test_a_reply_by_response_url_is_cleaned_too(bot: Bot, slack, llm) -> None:
    """/ask where the bot may not post: the answer goes back through the command's response_url."""
    slack.add_channel("C6", "no-bot", members=("U1",), bot_member=False)
    llm.script(Reply(content=f"<!here> {PHISH} for <@U2>"))
    await bot.command("/ask", "anything?", channel="C6", response_url=slack.response_url("ask"))
    await bot.idle()
    (reply,) = [r for r in slack.responses if "couldn't post this" in r.get("text", "")]
    assert "<!here" not in reply["text"] and "|Click" not in reply["text"], reply["text"]
    assert "Click to verify (https://evil.example/x) for <@U2>" in reply["text"]  # ephemeral: no ping
    assert reply["unfurl_links"] is False and reply["unfurl_media"] is False


async def test_a_link_completed_late_in_a_native_stream_is_never_shown_live(
    make_bot: MakeBot, slack, llm
) -> None:
    """A link too long to hold back streams unfinished; when it completes, the live view is
    replaced by clean parts instead of receiving the closing piece."""
    url = "https://evil.example/" + "a" * 700
    llm.script(Reply(content=f"see [Click to verify]({url}) done", stream_delay=0.02))
    harness = await make_bot(STREAM_UPDATE_SECONDS="0.05")
    try:
        await harness.event(dm("link?", ts="1700000908.000200", thread_ts="1700000908.000100"))
        await harness.idle()
    finally:
        await harness.close()
    assert slack.calls_to("chat.startStream"), "the answer should have streamed"
    appended = "".join(c.params.get("markdown_text", "") for c in slack.calls if "Stream" in c.method)
    assert f"]({url})" not in appended
    (answer,) = slack.posted(channel="D1")
    assert json.dumps(answer).count(f"see Click to verify ({url}) done") == 1
    assert "[Click" not in json.dumps(answer)
