"""`python -m bot` as a real process: HTTP mode, /healthz, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from tests.conftest import SIGNING_SECRET
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import event_body, mention, post_signed

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_sigterm_finishes_the_answer_in_flight(slack, llm, tmp_path, db_url) -> None:
    import aiohttp

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-process-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_API_KEY": "sk-process-test-key",
        "OPENAI_BASE_URL": llm.base_url,
        "DATABASE_URL": db_url,
        "PORT": str(port),
        "RUN_SCHEDULER": "false",
        "AUTO_MIGRATE": "true",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the bot never became healthy")
            llm.script(Reply(content="answered despite SIGTERM", delay=1.0))
            body = event_body(mention("<@UBOT> slow", ts="1.1"))
            status, _ = await post_signed(
                http,
                f"http://127.0.0.1:{port}/slack/events",
                body,
                SIGNING_SECRET,
                content_type="application/json",
            )
            assert status == 200
            while not llm.requests:
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert [p["text"] for p in slack.posted(channel="C1")] == ["answered despite SIGTERM"]
    log = err.decode()
    assert "xoxb-process-test" not in log and "sk-process-test-key" not in log
    assert SIGNING_SECRET not in log
