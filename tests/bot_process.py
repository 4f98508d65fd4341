"""`python -m bot` as a real child process pointed at the in-test fakes: start, wait, kill.

The crash tests SIGKILL these processes mid-work; the fakes live in the test process, so what
Slack saw survives every kill and can be counted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.conftest import SIGNING_SECRET
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import post_signed

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ("xoxb-process-test", "sk-process-test-key", SIGNING_SECRET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bot_env(slack: FakeSlack, llm: FakeOpenAI, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a bot process: our fakes, our database, no inherited Slack/OpenAI keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "DATABASE_"))}
    return env | {
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": SECRETS[0],
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_API_KEY": SECRETS[1],
        "OPENAI_BASE_URL": llm.base_url,
        "DATABASE_URL": db_url,
        "RUN_SCHEDULER": "false",
        "AUTO_MIGRATE": "true",  # the default on SQLite only; tests run on both
        **extra,
    }


class BotProcess:
    """One `python -m bot <command>` child; `kill()` is SIGKILL, `stop()` is SIGTERM."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.env, self.cwd, self.args = env, cwd, args
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 120.0) -> BotProcess:
        """Start and wait for /healthz (every command serves it on PORT or HEALTH_PORT). The
        timeout bounds a hang only: a start takes ~2 s alone, far longer on a loaded machine.
        A port taken between free_port() and the child's bind (parallel workers) gets a new one."""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(3):
                    if await self._start_once():
                        return self
                    self.port = free_port()
            raise AssertionError(f"bot could not bind a port: {self.log[-2000:]}")
        except BaseException:
            await self.kill()  # a child that never became healthy must not outlive the test
            raise

    async def _start_once(self) -> bool:
        """True once /healthz answers; False if the child found its port taken."""
        env = self.env | {"PORT": str(self.port), "HEALTH_PORT": str(self.port)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *self.args,
            cwd=self.cwd,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_log())
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    await self._reader
                    if "address already in use" in self.log.lower():
                        self.logs = []
                        return False
                    raise AssertionError(f"bot exited {self.proc.returncode}: {self.log[-2000:]}")
                try:
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return True
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.logs.append(line)

    @property
    def log(self) -> str:
        return b"".join(self.logs).decode(errors="replace")

    async def event(self, http: aiohttp.ClientSession, body: bytes, retry_num: int | None = None) -> int:
        """Deliver a signed event (see tests.fakes.slack_requests.event_body); the HTTP status."""
        return await self.post(http, body, "application/json", retry_num)

    async def command(self, http: aiohttp.ClientSession, body: bytes) -> int:
        """Deliver a signed slash command (tests.fakes.slack_requests.command_body)."""
        return await self.post(http, body, "application/x-www-form-urlencoded")

    async def post(
        self, http: aiohttp.ClientSession, body: bytes, content_type: str, retry_num: int | None = None
    ) -> int:
        url = f"{self.url}/slack/events"
        status, _ = await post_signed(
            http, url, body, SIGNING_SECRET, content_type=content_type, retry_num=retry_num
        )
        return status

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like an OOM kill or a lost host."""
        await self._signal(signal.SIGKILL)

    async def stop(self) -> None:
        await self._signal(signal.SIGTERM)

    async def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 30)
            await self._reader
