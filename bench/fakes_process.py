"""The fake Slack and model servers in a process of their own, so a load generator's timings
are not skewed by the fakes' work. Prints its URLs as one JSON line; stops when stdin closes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack


async def main(delay: float, answer: str) -> None:
    slack, llm = FakeSlack(), FakeOpenAI()
    slack.add_user("U1", "alice")
    slack.add_channel("C1", "general", members=("U1",))
    llm.default = Reply(content=answer, delay=delay)

    async def stats(_request: web.Request) -> web.Response:
        answers = [m for m in slack.posted(channel="C1") if answer in str(m.get("blocks"))]
        return web.json_response({"answers": len(answers), "max_in_flight": llm.max_in_flight})

    slack.app.router.add_get("/_stats", stats)
    await slack.start()
    await llm.start()
    print(
        json.dumps({"slack": slack.api_url, "llm": llm.base_url, "stats": f"{slack.url}/_stats"}), flush=True
    )
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    await slack.stop()
    await llm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=1.5)
    parser.add_argument("--answer", default="benchmark answer")
    args = parser.parse_args()
    asyncio.run(main(args.delay, args.answer))
