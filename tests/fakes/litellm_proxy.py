"""The LiteLLM proxy (a real third-party OpenAI-compatible server) on a loopback port.

LiteLLM is not in the test extra: `litellm[proxy]` pins rich<14 (we need rich>=14) and brings
~750 MB of dependencies, so it lives in a venv of its own. Point LITELLM_BIN at its `litellm`
executable (or put one on PATH); tests/test_litellm_proxy.py and bench/litellm_check.py use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

MODEL = "fake-model"
PROXY_KEY = "sk-litellm-check-0123456789"
START_TIMEOUT = 120.0  # seconds; the proxy imports a lot before it listens
CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: sk-fake-upstream
general_settings:
  master_key: {key}
litellm_settings:
  drop_params: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proxy:
    url: str
    started_in: float


@contextlib.asynccontextmanager
async def litellm_proxy(executable: str, upstream: str) -> AsyncIterator[Proxy]:
    """`litellm --config` on a free loopback port, stopped (by its own pid) on the way out."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG.format(model=MODEL, api_base=upstream, key=PROXY_KEY))
        env = {**os.environ, "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "true", "NO_DOCS": "true"}
        env.pop("DATABASE_URL", None)  # the proxy would try to use it for its own tables
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            executable,
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
            env=env,
            cwd=tmp,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, proc)
            yield Proxy(url, time.perf_counter() - started)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"litellm exited with {proc.returncode}: {err[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/health/liveliness") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.25)
    raise TimeoutError(f"litellm did not answer within {START_TIMEOUT:g} s")


def find_litellm() -> str | None:
    """The `litellm` executable from LITELLM_BIN or PATH, or None."""
    configured = os.environ.get("LITELLM_BIN", "").strip()
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("litellm")
