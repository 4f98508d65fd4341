"""`python -m bot` as a real process: HTTP mode, /healthz, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.bot_process import SECRETS, BotProcess, bot_env
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import event_body, mention


async def test_sigterm_finishes_the_answer_in_flight(slack, llm, tmp_path, db_url) -> None:
    bot = await BotProcess(bot_env(slack, llm, db_url), tmp_path).start()  # no command: serve
    try:
        async with aiohttp.ClientSession() as http:
            llm.script(Reply(content="answered despite SIGTERM", delay=1.0))
            assert await bot.event(http, event_body(mention("<@UBOT> slow", ts="1.1"))) == 200
            while not llm.requests:
                await asyncio.sleep(0.02)
            await bot.stop()
    finally:
        await bot.kill()
    assert bot.proc is not None and bot.proc.returncode == 0, bot.log
    assert [p["text"] for p in slack.posted(channel="C1")] == ["answered despite SIGTERM"]
    assert not any(secret in bot.log for secret in SECRETS)
