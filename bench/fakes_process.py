"""The fake Slack and model servers in a process of their own, so a load generator's timings
are not skewed by the fakes' work. Prints its URLs as one JSON line; stops when stdin closes.

With --tokens the model streams its answer one delta per token after --delay (time to first
token), --token-interval apart. /_stats also says when each thread's final answer appeared
(time.monotonic(), the same clock in every process of the machine) and how many TCP connections
the fake Slack and the model accepted; POST /_messages stores people's mentions as Slack would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.slack.output.render import answer_tag_of
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConnectionCount:
    """TCP connections a server accepted: a request on a transport not seen before is a new one."""

    def __init__(self) -> None:
        self.seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self.accepted = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None and request.transport not in self.seen:
            self.seen.add(request.transport)
            self.accepted += 1
        return await handler(request)


def streamed_answer(tokens: int) -> str:
    """An answer the fake streams as exactly `tokens` content deltas (one per token)."""
    piece = openai_server.CONTENT_PIECE  # characters the fake sends per delta
    return "".join(f"token{i:04d}".ljust(piece - 1, "x") + " " for i in range(tokens)).rstrip()


async def main(delay: float, answer: str, tokens: int, token_interval: float, users: int) -> None:
    slack, llm = FakeSlack(), FakeOpenAI()
    people = [f"U{i}" for i in range(1, users + 1)]
    for user in people:
        slack.add_user(user, user.lower())
    slack.add_channel("C1", "general", members=tuple(people))
    if tokens:
        answer = streamed_answer(tokens)
    llm.default = Reply(content=answer, delay=delay, stream_delay=token_interval)
    slack_connections, model_connections = ConnectionCount(), ConnectionCount()
    slack.app.middlewares.append(slack_connections.middleware)
    llm.app.middlewares.append(model_connections.middleware)
    answered: dict[str, float] = {}  # thread ts -> when its final answer appeared

    def on_applied(method: str, params: dict[str, Any]) -> None:
        if method not in ("chat.postMessage", "chat.update", "chat.stopStream"):
            return
        if not answer_tag_of(params)[1] or answer not in json.dumps(params.get("blocks")):
            return
        thread = params.get("thread_ts")
        if not thread:
            thread = (slack.find(str(params.get("channel")), str(params.get("ts"))) or {}).get("thread_ts")
        if thread:
            answered.setdefault(str(thread), time.monotonic())

    slack.after_applied.append(on_applied)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "answers": len(answered),
                "answered": answered,
                "max_in_flight": llm.max_in_flight,
                "slack_connections": slack_connections.accepted,
                "model_connections": model_connections.accepted,
            }
        )

    async def messages(request: web.Request) -> web.Response:
        """Store one mention per listed user, as Slack keeps them; returns their ts in order."""
        body = await request.json()
        return web.json_response([slack.add_message("C1", u, text) for u, text in body])

    slack.app.router.add_get("/_stats", stats)
    slack.app.router.add_post("/_messages", messages)
    await slack.start()
    await llm.start()
    print(
        json.dumps(
            {
                "slack": slack.api_url,
                "llm": llm.base_url,
                "stats": f"{slack.url}/_stats",
                "messages": f"{slack.url}/_messages",
                "answer": answer,
            }
        ),
        flush=True,
    )
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    await slack.stop()
    await llm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=1.5, help="seconds to the first token")
    parser.add_argument("--answer", default="benchmark answer")
    parser.add_argument("--tokens", type=int, default=0, help="stream this many deltas instead of --answer")
    parser.add_argument("--token-interval", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--users", type=int, default=1, help="people U1..Un in #general")
    args = parser.parse_args()
    asyncio.run(main(args.delay, args.answer, args.tokens, args.token_interval, args.users))
