"""Settings: names, defaults, and one plain message for every missing or malformed value."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import DEFAULT_MODEL, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}


def test_defaults() -> None:
    s = load_settings(GOOD)
    assert s.port == 3000
    assert s.run_scheduler is True
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.openai_model == DEFAULT_MODEL
    assert s.database_url == "sqlite+aiosqlite:///./data/switchboard.db"
    assert not s.socket_mode and not s.llm_configured


def test_socket_mode_and_url_forms() -> None:
    s = load_settings(
        {
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_APP_TOKEN": "xapp-1",
            "DATABASE_URL": "sqlite:////tmp/x.db",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "RUN_SCHEDULER": "false",
            "TOOL_HTTP_ALLOW_HOSTS": "Example.com, 127.0.0.1:8080",
        }
    )
    assert s.socket_mode
    assert s.database_url == "sqlite+aiosqlite:////tmp/x.db"
    assert s.slack_api_url == "http://127.0.0.1:9/api/"
    assert s.run_scheduler is False
    assert s.tools.http_allow_hosts == {"example.com", "127.0.0.1:8080"}
    pg = load_settings({**GOOD, "DATABASE_URL": "postgresql://u:p@db/x"})
    assert pg.database_url == "postgresql+asyncpg://u:p@db/x"


def test_secrets_not_in_repr() -> None:
    s = load_settings({**GOOD, "OPENAI_API_KEY": "sk-secret-value"})
    assert "sk-secret-value" not in repr(s) and "xoxb-1" not in repr(s)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxp-user", "SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN"),
        ({**GOOD, "SLACK_APP_TOKEN": "bad"}, "SLACK_APP_TOKEN"),
        ({**GOOD, "PORT": "eighty"}, "PORT"),
        ({**GOOD, "PORT": "70000"}, "PORT"),
        ({**GOOD, "RUN_SCHEDULER": "maybe"}, "RUN_SCHEDULER"),
        ({**GOOD, "DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({**GOOD, "OPENAI_BASE_URL": "not a url"}, "OPENAI_BASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_missing_setting_stops_start_with_one_plain_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "SLACK_BOT_TOKEN" in proc.stderr and "OAuth & Permissions" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
