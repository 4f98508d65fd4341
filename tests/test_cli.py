"""Issue 14: the `switchboard` command (argparse), `runs`, `doctor`, and the start-up fixes:
LOG_LEVEL checked, LOG_FORMAT=json, HOST, no Bolt token warning, no leaked session on a failed
start, and /weather keeping its forecast when the model fails."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.bot_process import bot_env, free_port
from tests.conftest import Bot, premigrated
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention
from tests.test_commands import cbot, fakes  # noqa: F401  (fixtures: the bot with weather fakes)
from tests.test_migrations import run_cli, wait_ready

ROOT = Path(__file__).resolve().parents[1]


async def test_help_version_and_unknown_arguments_never_start_the_server(
    tmp_path, slack, llm, db_url, capsys
) -> None:
    """--help and --version are argparse's, in this process (a real process runs --version in
    test_the_installed_console_script_is_the_same_command); the typo runs in a real process."""
    from bot.__main__ import main

    for args in (["--help"], ["--version"]):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code in (0, None)
        out = capsys.readouterr().out
        if args == ["--help"]:
            assert out.startswith("usage: switchboard")
            for command in ("serve", "clock", "console", "migrate", "runs", "doctor"):
                assert command in out
        else:
            assert out.strip() == "switchboard 0.1.0"
    env = bot_env(slack, llm, db_url)  # a valid configuration: serving would work
    code, out, err = await run_cli("serv", env=env, cwd=tmp_path)  # a typo, in a real process
    assert code == 2 and err.startswith("usage: switchboard") and "invalid choice: 'serv'" in err
    assert slack.calls_to("auth.test") == []  # nothing started


@pytest.mark.parametrize(
    "wrong", [["serve", "--bogus"], ["runs", "show", "forty-two"], ["--verbose"], ["a", "b"]]
)
def test_unknown_arguments_exit_2_with_usage(wrong: list[str], capsys) -> None:
    from bot.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(wrong)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("usage: switchboard") and "error:" in err


async def test_the_installed_console_script_is_the_same_command(tmp_path) -> None:
    script = Path(sys.executable).with_name("switchboard")
    proc = await asyncio.create_subprocess_exec(str(script), "--version", stdout=-1, stderr=-1, cwd=tmp_path)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and out.decode().strip() == "switchboard 0.1.0"


async def test_a_bad_log_level_is_one_line(tmp_path, slack, llm, db_url) -> None:
    code, _, err = await run_cli("serve", env=bot_env(slack, llm, db_url, LOG_LEVEL="verbose"), cwd=tmp_path)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        "Switchboard cannot start: LOG_LEVEL must be one of info, debug, warning, error, critical, "
        "got 'verbose'."
    )


async def test_json_logs_host_and_a_quiet_start(tmp_path, slack, llm, db_url) -> None:
    port = free_port()
    env = bot_env(
        slack, llm, db_url, LOG_FORMAT="json", HOST="127.0.0.1", PORT=str(port), AUTO_MIGRATE="true"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=-1, stderr=-1
    )
    try:
        async with aiohttp.ClientSession() as http:
            assert await wait_ready(http, port, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    records = [json.loads(line) for line in err.decode().splitlines()]  # every line is JSON
    messages = [r["message"] for r in records]
    assert f"listening on http://127.0.0.1:{port}/slack/events" in messages
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert not any("will be unused" in m for m in messages)  # Bolt's token warning is gone


async def test_a_failed_start_is_one_line_and_leaks_no_session(tmp_path, slack, llm, db_url) -> None:
    slack.fail_next("auth.test", error="invalid_auth")
    code, _, err = await run_cli(
        "serve", env=bot_env(slack, llm, db_url, PORT=str(free_port())), cwd=tmp_path
    )
    assert code == 1
    assert "invalid_auth" in err and "Traceback" not in err
    assert "Unclosed" not in err, err  # aiohttp's "Unclosed client session" on a leaked client


async def test_weather_keeps_the_forecast_when_the_model_fails(cbot: Bot, slack, llm) -> None:  # noqa: F811
    llm.script(Reply(status=500, error_message="the model is overloaded"))
    await cbot.command("/weather", "Karachi", response_url=slack.response_url("w"))
    await cbot.idle()
    (posted,) = slack.posted(channel="C1")
    text = json.dumps(posted, ensure_ascii=False)
    assert "could not write a summary" in text and "Weather for Karachi, Pakistan" in text and "°C" in text


async def test_runs_lists_runs_and_shows_one_with_steps(tmp_path, bot: Bot, slack, llm, db_url) -> None:
    llm.script(Reply(content="an answer"))
    await bot.event(mention("<@UBOT> first", ts="1.1"))
    await bot.idle()
    llm.script(Reply(status=404, error_message="model not found"))
    await bot.event(mention("<@UBOT> second", ts="2.1"))
    await bot.idle()
    env = bot_env(slack, llm, db_url)
    code, out, err = await run_cli("runs", env=env, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "started", "(UTC)"]
    assert (
        lines[1].split()[0] == "2"
        and "failed" in lines[1]
        and lines[2].split()[0] == "1"
        and " ok " in lines[2]
    )
    code, out, err = await run_cli("runs", "show", "2", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("run 2: mention, failed,")
    assert "error: " in out and "404" in out  # the run's error and the model step's error
    assert "1. model " in out and " ms)" in out and "tokens" in out
    code, out, _ = await run_cli("runs", "show", "99", env=env, cwd=tmp_path)
    assert code == 1 and out.strip() == "There is no run 99."


async def test_doctor_checks_each_dependency_in_plain_words(
    tmp_path, slack, llm, db_url, migrated_sqlite
) -> None:
    env = bot_env(slack, llm, db_url, AUTO_MIGRATE="true")
    if db_url.startswith("sqlite"):  # `migrate` itself is tested in test_migrations.py
        premigrated(db_url, migrated_sqlite)
    else:
        code, out, err = await run_cli("migrate", env=env, cwd=tmp_path)
        assert code == 0, err
    code, out, err = await run_cli("doctor", env=env, cwd=tmp_path)
    assert code == 0, out + err
    pool = ["ok    database pool"] if not db_url.startswith("sqlite") else []  # Postgres: does it fit?
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "ok    settings",
        "ok    database",
        *pool,
        "ok    slack",
        "ok    model",
    ]

    slack.fail_next("auth.test", error="invalid_auth")
    broken = env | {"OPENAI_BASE_URL": llm.url, "SLACK_SIGNING_SECRET": ""}  # no /v1; no secret
    code, out, err = await run_cli("doctor", env=broken, cwd=tmp_path)
    assert code == 1
    report = dict(line.split(": ", 1) for line in out.splitlines())
    assert "SLACK_SIGNING_SECRET" in report["FAIL  settings"]
    assert report["FAIL  slack"] == "Slack rejected SLACK_BOT_TOKEN: invalid_auth"
    assert "404" in report["FAIL  model"] and "OPENAI_BASE_URL usually ends in /v1" in report["FAIL  model"]
    assert report["ok    database"].endswith(f"the schema is current (revision {_head()})")


def _head() -> str:
    from bot.db import schema

    return schema.head()
