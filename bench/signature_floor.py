"""The floor of an ack: a bare aiohttp server that checks Slack's v0 signature and answers 200.

Run in its own process by bench/load.py, driven with the same deliveries as the bot in the same
run, so the bot's ack latency is read against what any server on this machine needs then.
The signing secret comes from SLACK_SIGNING_SECRET, as the bot's does. Prints its URL as one JSON
line; stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import time

from aiohttp import web

MAX_AGE = 60 * 5  # Slack's advice: refuse requests older than five minutes (replays)


def signed(secret: bytes, timestamp: str, signature: str, body: bytes) -> bool:
    try:
        fresh = abs(time.time() - int(timestamp)) <= MAX_AGE
    except ValueError:
        return False
    expected = "v0=" + hmac.new(secret, f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return fresh and hmac.compare_digest(expected, signature)


async def main(secret: str) -> None:
    key = secret.encode()

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        ok = signed(
            key,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
            body,
        )
        return web.Response(status=200 if ok else 401)

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"url": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(os.environ["SLACK_SIGNING_SECRET"]))
