"""Issue 23, item 8: refused requests are counted, not logged one by one; no log prints message
text unless LOG_MESSAGE_TEXT says so."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp

from bot.slack.door.front_door import Rejections
from tests.bot_process import BotProcess, bot_env
from tests.conftest import SIGNING_SECRET, Bot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import command_body, event_body, mention, sign

EDGE = "bot.slack.door.front_door"
SECRET = "quokka-7f3e9a"  # a message text no log line may carry
COUNTED = re.compile(r"^rejected (\d+) requests? to /slack/events: bad or missing signature")


async def rejected_total(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics") as r:
        text = await r.text()
    found = re.search(r'^switchboard_requests_rejected_total\{reason="signature"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def test_two_thousand_unsigned_requests_are_one_counted_line(bot: Bot, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    before = await rejected_total(bot.http, bot.url)
    body = event_body(mention("<@UBOT> hi", ts="1.1"))
    good = sign(SIGNING_SECRET, body)
    variants = [
        {},  # no signature at all
        {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"], "X-Slack-Signature": "v0=00"},
        sign("another-secret", body),
        sign(SIGNING_SECRET, body, timestamp=1),  # a replay from long ago
    ]

    async def send(i: int) -> int:
        headers = variants[i % len(variants)] | {"Content-Type": "application/json"}
        async with bot.http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
            return r.status

    statuses = []
    for start in range(0, 2_000, 100):
        statuses += await asyncio.gather(*(send(i) for i in range(start, start + 100)))
    assert statuses == [401] * 2_000
    while_running = [r.getMessage() for r in caplog.records if r.name == EDGE]
    assert len(while_running) == 1 and COUNTED.match(while_running[0])
    assert await rejected_total(bot.http, bot.url) - before == 2_000

    await bot.stop()  # the rest of the interval's count is logged at shutdown, not lost
    lines = [r.getMessage() for r in caplog.records if r.name == EDGE]
    counts = [int(m[1]) for line in lines if (m := COUNTED.match(line))]
    assert len(lines) == 2 and counts == [1, 1_999]
    assert all(r.levelno < logging.WARNING for r in caplog.records if r.name != EDGE)


async def test_a_count_is_logged_when_its_interval_ends(caplog) -> None:
    caplog.set_level(logging.INFO)
    rejections = Rejections("bad or missing signature", "signature", interval=0.05)
    for _ in range(3):
        rejections.add()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == EDGE]

    async with asyncio.timeout(60):
        while len(lines()) < 2 or rejections.timer is not None:  # the count, then a quiet interval
            await asyncio.sleep(0.01)
    rejections.add()  # the first after a quiet interval is logged at once
    rejections.close()
    assert [COUNTED.match(line)[1] for line in lines()] == ["1", "2", "1"]  # type: ignore[index]


async def answered_with_secret(slack, llm, weather, db_url, tmp_path, **env: str) -> BotProcess:
    """A real `python -m bot` at LOG_LEVEL=DEBUG answers a mention, an /ask and a /weather that
    carry SECRET (in the question, a tool's arguments and error, the answer, a failed run's reason);
    returns it, stopped, for its log."""
    llm.script(
        Reply(tool_calls=[ToolCall("get_weather", {"location": SECRET})]),
        Reply(content=f"I found no weather for {SECRET}."),
        Reply(content=f"About {SECRET}: nothing."),
    )
    extra = {"LOG_LEVEL": "DEBUG", "OPEN_METEO_URL": weather.url, "OPEN_METEO_GEOCODING_URL": weather.url}
    process = await BotProcess(bot_env(slack, llm, db_url, **extra, **env), tmp_path).start()
    try:
        async with aiohttp.ClientSession() as http:
            assert (
                await process.event(http, event_body(mention(f"<@UBOT> weather in {SECRET}?", ts="5.1")))
                == 200
            )
            await slack.wait_for(
                lambda: slack.posted(channel="C1", thread_ts="5.1"), timeout=120, what="answer"
            )
            body = command_body("/ask", f"what is {SECRET}?", response_url=slack.response_url())
            assert await process.command(http, body) == 200
            await slack.wait_for(
                lambda: len(slack.posted(channel="C1")) == 2, timeout=120, what="/ask answer"
            )
            body = command_body("/weather", SECRET, response_url=slack.response_url())
            assert await process.command(http, body) == 200  # the geocoder knows no such place
            await slack.wait_for(
                lambda: any(SECRET in r.get("text", "") for r in slack.responses), timeout=120
            )
        await process.stop()
    finally:
        await process.kill()
    assert all(SECRET in p["text"] for p in slack.posted(channel="C1"))
    return process


async def test_no_log_level_prints_message_text(slack, llm, weather, db_url, tmp_path) -> None:
    process = await answered_with_secret(slack, llm, weather, db_url, tmp_path)
    assert " DEBUG " in process.log  # the level was on; what failed is said, without the text:
    assert re.search(r"tool get_weather \d+ ms error=\[\d+ characters\]", process.log)
    assert SECRET not in process.log


async def test_log_message_text_lets_it_through(slack, llm, weather, db_url, tmp_path) -> None:
    process = await answered_with_secret(slack, llm, weather, db_url, tmp_path, LOG_MESSAGE_TEXT="true")
    assert SECRET in process.log
