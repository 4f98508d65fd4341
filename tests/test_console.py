"""Issue 4: console mode runs the same router from stdin, with tool steps shown."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.weather import FakeOpenMeteo

ROOT = Path(__file__).resolve().parents[1]


async def run_console(stdin: str, env_extra: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    env |= {"PYTHONPATH": str(ROOT), "COLUMNS": "100", **env_extra}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "console",
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 300)
    return proc.returncode, out.decode(), err.decode()


async def test_console_answers_questions_and_commands(llm, tmp_path) -> None:
    async with FakeOpenMeteo() as meteo:
        llm.script(
            Reply(tool_calls=[ToolCall("get_weather", {"location": "Karachi", "days": 2})]),
            Reply(content="## Karachi\n\n- Tomorrow: **32°C**, clear sky"),
            Reply(content="Berlin will be cold and grey."),  # the /weather workflow's summary
        )
        code, out, err = await run_console(
            "what's the weather in Karachi tomorrow?\n/weather Berlin\n/summarize #general\nexit\n",
            {
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_API_KEY": "sk-console-test",
                "OPEN_METEO_URL": meteo.url,
                "OPEN_METEO_GEOCODING_URL": meteo.url,
            },
            tmp_path,
        )
    assert code == 0, err
    assert "you> what's the weather in Karachi tomorrow?" in out
    assert "… Checking the weather…" in out
    assert '· tool get_weather {"location": "Karachi", "days": 2}' in out
    assert "Tomorrow: 32°C, clear sky" in out  # Markdown rendered: no ** left
    assert "**" not in out.split("you> /weather")[0]
    assert "Berlin will be cold and grey." in out and "Weather for Berlin, Germany" in out
    assert "console mode" in out  # /summarize needs Slack, and says so
    assert "sk-console-test" not in out + err


async def test_console_needs_a_model(tmp_path) -> None:
    code, _, err = await run_console("hi\n", {}, tmp_path)
    assert code == 2 and "OPENAI_API_KEY" in err and "Traceback" not in err
