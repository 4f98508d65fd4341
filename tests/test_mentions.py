"""Issue 10, finding 5: broadcast and user-group mentions in model and tool text never notify."""

from __future__ import annotations

import json

from bot.slack.mentions import JOINER, neutralize, neutralize_blocks, stable_prefix
from tests.conftest import Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import dm, mention

LOUD = "Heads up <!channel> and <!here|here>, <!everyone>, <!subteam^S0ENG|@eng> and @here, ping <@U2>"
LIVE = ("<!channel", "<!here", "<!everyone", "<!subteam", " @here")


def test_neutralize_keeps_the_words_and_drops_the_broadcast() -> None:
    quiet = neutralize(LOUD)
    assert quiet.replace(JOINER, "") == "Heads up @channel and @here, @everyone, @eng and @here, ping <@U2>"
    assert not any(token in quiet for token in LIVE)
    assert neutralize("mail me at bob@here.com or <!date^1392734382^{date}|Feb 18>") == (
        "mail me at bob@here.com or <!date^1392734382^{date}|Feb 18>"
    )
    blocks = neutralize_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": "<!here> hi"}}])
    assert blocks[0]["text"]["text"] == f"@{JOINER}here hi"


def test_streaming_never_cuts_a_mention_in_half() -> None:
    assert stable_prefix("hello <!chan") == len("hello ")
    assert stable_prefix("hello @he") == len("hello ")
    assert stable_prefix("hello <!channel> done") == len("hello <!channel> done")


def assert_quiet(posted: list[dict]) -> None:
    text = json.dumps(posted, ensure_ascii=False)
    assert posted and "@\u2060channel" in text and "<@U2>" in text
    assert not any(token in text for token in LIVE), text


async def test_model_text_is_defused_in_a_channel_thread(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content=LOUD))
    await bot.event(mention("<@UBOT> tell <!here> the news", ts="1700000900.000100"))
    await bot.idle()
    assert_quiet(slack.posted(channel="C1"))
    user = [m for m in llm.requests[0]["messages"] if m["role"] == "user"]
    assert user[-1]["content"] == "tell <!here> the news"  # a person's own words are not altered


async def test_model_text_is_defused_when_streamed_natively(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content=LOUD * 3, stream_delay=0.02))
    await bot.event(dm("news?", ts="1700000901.000200", thread_ts="1700000901.000100"))
    await bot.idle()
    appended = [c.params.get("markdown_text", "") for c in slack.calls if "Stream" in c.method]
    assert appended and not any(token in "".join(appended) for token in LIVE)
    assert_quiet(slack.posted(channel="D1"))
