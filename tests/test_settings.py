"""Settings: one field per variable (its name), defaults, bounds, one plain message for every missing or
malformed value, and the docs table generated from the fields."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.__main__ import main
from bot.controls.channel_config import CAPS, KEYS, MODEL_NAME, ConfigUsageError, check_value
from bot.settings import (
    DEFAULT_MODEL,
    DEFAULT_PRICES,
    REFERENCE,
    REGENERATE,
    URL_FIELDS,
    ConfigError,
    Settings,
    bounds,
    choices,
    env_name,
    is_secret,
    load_settings,
    reference_page,
    table_markdown,
)
from bot.slack.listeners.home_settings import LABELS

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


SPECIAL = {  # a valid value other than the default, where the field's type alone does not give one
    "slack_bot_token": ("xoxb-other", "xoxb-other"),
    "slack_app_token": ("xapp-other", "xapp-other"),
    "database_url": ("postgresql://u@db/x", "postgresql+asyncpg://u@db/x"),
    "database_listen_url": ("postgresql://u@db/x", "postgresql+asyncpg://u@db/x"),
    "model_prices": ('{"mine": [1, 2]}', {**DEFAULT_PRICES, "mine": (1.0, 2.0)}),
    "tool_http_allow_hosts": ("A.test, b.test:81", frozenset({"a.test", "b.test:81"})),
    "egress_trusted_hosts": ("A.test", frozenset({"a.test"})),
    "slack_api_url": ("http://127.0.0.1:9/api", "http://127.0.0.1:9/api/"),
    "health_port": ("9090", 9090),
}
COMPANIONS = {  # settings that are only valid together
    "slack_client_id": {"SLACK_CLIENT_SECRET": "cs", "SLACK_TOKEN_KEY": Fernet.generate_key().decode()},
    "slack_client_secret": {"SLACK_CLIENT_ID": "ci", "SLACK_TOKEN_KEY": Fernet.generate_key().decode()},
    "azure_openai_endpoint": {"OPENAI_API_VERSION": "2024-10-21"},
}


def other_value(field: str) -> tuple[str, object]:
    """A valid value for `field` that differs from its default: (as the environment gives it, as read)."""
    if field in SPECIAL:
        return SPECIAL[field]
    info = Settings.model_fields[field]
    high = bounds(field)[1]
    if field in URL_FIELDS:
        return "https://other.test", "https://other.test"
    if info.annotation is bool:
        return str(not info.default).lower(), not info.default
    if choices(field):
        return str(choices(field)[-1]), choices(field)[-1]
    if info.annotation is int:
        return str(int(high or 0)), int(high or 0)
    if info.annotation is float:
        return str(info.default * 2), info.default * 2
    return "other", "other"


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_each_variable_sets_the_field_of_its_name(field: str, tmp_path: Path) -> None:
    """The environment variable of every setting is its field's name (in any case), nothing else."""
    raw, expected = other_value(field)
    if field == "mcp_servers":  # a path, read at once
        raw = expected = str(tmp_path / "mcp.json")
        Path(raw).write_text('{"servers": {}}')
    assert raw != Settings.model_fields[field].get_default(call_default_factory=True)
    env = {**GOOD, **COMPANIONS.get(field, {}), field.upper(): raw}
    assert getattr(load_settings(env), field) == expected
    assert getattr(load_settings({**GOOD, **COMPANIONS.get(field, {}), field: raw}), field) == expected


def test_every_setting_has_a_doc_and_no_setting_is_read_elsewhere() -> None:
    assert all(info.description for info in Settings.model_fields.values())
    assert env_name("port") == "PORT"
    readers = []
    for folder in ("bot", "orchestrators", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            if "os.environ" in path.read_text() or "getenv(" in path.read_text():
                readers.append(path.relative_to(ROOT).as_posix())
    assert readers == ["bot/settings.py"]


BOUNDED = [f for f in Settings.model_fields if None not in bounds(f)]


@pytest.mark.parametrize("field", BOUNDED)
def test_every_bound_is_enforced_and_said(field: str) -> None:
    low, high = bounds(field)
    name = field.upper()
    for outside in (int(low or 0) - 1, int(high or 0) + 1):
        with pytest.raises(ConfigError) as caught:
            load_settings({**GOOD, name: str(outside)})
        assert str(caught.value) == f"{name} must be between {low:.0f} and {high:.0f}, got {outside}."
        assert caught.value.setting == field


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENT_MAX_STEPS": "51"}, "AGENT_MAX_STEPS must be between 1 and 50, got 51."),
        ({"WORK_CONCURRENCY": "1.5"}, "WORK_CONCURRENCY must be a whole number, got '1.5'."),
        ({"LLM_TIMEOUT": "-1"}, "LLM_TIMEOUT must be positive, got '-1'."),
        ({"WORK_LEASE_SECONDS": "soon"}, "WORK_LEASE_SECONDS must be a number of seconds, got 'soon'."),
        ({"LOG_FORMAT": "XML"}, "LOG_FORMAT must be one of text, json, got 'xml'."),
        ({"DB_PGBOUNCER": "maybe"}, "DB_PGBOUNCER must be true or false, got 'maybe'."),
        (
            {"MODEL_PRICES": "[1]"},
            'MODEL_PRICES must look like {"model": [input_usd_per_mtok, output_usd_per_mtok]}.',
        ),
    ],
)
def test_bad_values_get_one_plain_sentence(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**GOOD, **env})
    assert str(caught.value).startswith(message) and str(caught.value).endswith(".")


def test_a_blank_variable_is_unset() -> None:
    assert load_settings({**GOOD, "PORT": " ", "OPENAI_MODEL": ""}).port == 3000


def test_every_secret_stays_out_of_repr_and_logs() -> None:
    oauth = {
        "SLACK_CLIENT_ID": "client-id-1",
        "SLACK_CLIENT_SECRET": "client-secret-2",
        "SLACK_TOKEN_KEY": Fernet.generate_key().decode(),
        "OPENAI_API_KEY": "sk-secret-3",
        "AZURE_OPENAI_API_KEY": "azure-secret-4",
        "DATABASE_LISTEN_URL": "postgresql://u:pw-5@db/x",
    }
    slack = {"SLACK_BOT_TOKEN": "xoxb-secret-0", "SLACK_SIGNING_SECRET": "signing-secret-7"}
    for env in ({**slack, **oauth}, {**slack, "SLACK_APP_TOKEN": "xapp-secret-6"}):
        s = load_settings(env)
        secret = [f for f in Settings.model_fields if is_secret(f) and getattr(s, f)]
        assert not any(str(getattr(s, f)) in repr(s) for f in secret)
        assert set(s.secrets()) == {str(getattr(s, f)) for f in secret}
    assert all(not Settings.model_fields[f].repr for f in Settings.model_fields if is_secret(f))
    assert {"slack_client_secret", "slack_token_key", "azure_openai_api_key"} <= set(
        filter(is_secret, Settings.model_fields)
    )


def test_the_settings_reference_is_generated_from_the_fields() -> None:
    committed = (ROOT / REFERENCE).read_text() if (ROOT / REFERENCE).exists() else ""
    assert committed == reference_page(), f"{REFERENCE} is out of date: run `{REGENERATE}`"
    for field in Settings.model_fields:
        assert f"| `{field.upper()}` |" in committed


def test_the_settings_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == reference_page()
    assert main(["settings"]) == 0
    assert capsys.readouterr().out == table_markdown()


def test_app_home_and_config_take_the_caps_wording_and_bound_from_the_fields() -> None:
    for key in CAPS:
        info = Settings.model_fields[key]
        assert LABELS[key] == info.title and KEYS[key] == str(info.title).lower()
        assert check_value(key, str(info.metadata[-1].le)) == str(info.metadata[-1].le)
        with pytest.raises(ConfigUsageError):
            check_value(key, str(info.metadata[-1].le + 1))
    assert MODEL_NAME.match("m" * 100) and not MODEL_NAME.match("m" * 101)
