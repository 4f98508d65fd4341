"""One Settings object, read once from the environment (and `.env`), so nothing else reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tools.context import ToolSettings

DEFAULT_MODEL = "gpt-5.4-mini"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/switchboard.db"
SECRET_NAMES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "OPENAI_API_KEY")

WHERE = {
    "SLACK_BOT_TOKEN": "Slack app settings > OAuth & Permissions > Bot User OAuth Token (xoxb-...)",
    "SLACK_SIGNING_SECRET": "Slack app settings > Basic Information > App Credentials > Signing Secret",
    "SLACK_APP_TOKEN": "Slack app settings > Basic Information > App-Level Tokens "
    "(scope connections:write, xapp-...)",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says where to get it."""


@dataclass(frozen=True)
class Settings:
    """Every setting Switchboard reads; documented in the README's table."""

    slack_bot_token: str = field(repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000
    host: str = "0.0.0.0"
    health_port: int | None = None
    run_scheduler: bool = True
    log_level: str = "INFO"
    log_format: str = "text"
    auto_migrate: bool = True
    db_pool_size: int = 5
    db_max_overflow: int = 10
    db_pgbouncer: bool = False
    retention_days: int = 90
    llm_timeout: float = 60.0
    llm_max_retries: int = 2
    agent_max_steps: int = 8
    agent_deadline: float = 90.0
    agent_token_budget: int = 100_000
    history_token_budget: int = 12_000
    stream_interval: float = 1.0
    tools: ToolSettings = field(default_factory=ToolSettings)

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = env.get(name, "").strip() or default
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}.")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}.")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}.")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}.")


def database_url(raw: str) -> str:
    """Accept `sqlite:///path` and `postgresql://...` and return the async driver's form."""
    if not raw:
        return DEFAULT_DATABASE_URL
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise ConfigError(f"DATABASE_URL must look like sqlite:///path or postgresql://..., got {raw!r}.")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    raise ConfigError(f"DATABASE_URL must be sqlite:/// or postgresql://, got scheme {scheme!r}.")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    value = raw.upper() if choices == LOG_LEVELS else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}.")
    return value


def _token(env: Mapping[str, str], name: str, prefix: str) -> str | None:
    value = env.get(name, "").strip()
    if value and not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix!r}. Get it from {WHERE[name]}.")
    return value or None


def load_settings(
    env: Mapping[str, str] | None = None, *, need_slack: bool = True, need_slack_signing: bool = True
) -> Settings:
    """Read and check every setting; raises ConfigError naming the first bad one."""
    if env is None:
        from dotenv import load_dotenv

        load_dotenv(Path.cwd() / ".env", override=False)
        env = os.environ
    bot_token = _token(env, "SLACK_BOT_TOKEN", "xoxb-")
    app_token = _token(env, "SLACK_APP_TOKEN", "xapp-")
    signing_secret = env.get("SLACK_SIGNING_SECRET", "").strip() or None
    if need_slack:
        if not bot_token:
            raise ConfigError(f"SLACK_BOT_TOKEN is not set. Get it from {WHERE['SLACK_BOT_TOKEN']}.")
        if need_slack_signing and not app_token and not signing_secret:
            raise ConfigError(
                "Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode). "
                f"SLACK_APP_TOKEN: {WHERE['SLACK_APP_TOKEN']}. "
                f"SLACK_SIGNING_SECRET: {WHERE['SLACK_SIGNING_SECRET']}."
            )
    slack_api_url = _url(env, "SLACK_API_URL", "https://slack.com/api/") or ""
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"
    allow = frozenset(h.strip().lower() for h in env.get("TOOL_HTTP_ALLOW_HOSTS", "").split(",") if h.strip())
    model = env.get("OPENAI_MODEL", "").strip() or DEFAULT_MODEL
    db_url = database_url(env.get("DATABASE_URL", "").strip())
    tools = ToolSettings(
        open_meteo_url=_url(env, "OPEN_METEO_URL", "https://api.open-meteo.com") or "",
        open_meteo_geocoding_url=_url(env, "OPEN_METEO_GEOCODING_URL", "https://geocoding-api.open-meteo.com")
        or "",
        searxng_url=_url(env, "SEARXNG_URL", None),
        http_allow_hosts=allow,
        model=model,
        summarize_token_budget=_int(env, "SUMMARIZE_TOKEN_BUDGET", 200_000, 10_000, 100_000_000),
    )
    return Settings(
        slack_bot_token=bot_token or "",
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=slack_api_url,
        openai_api_key=env.get("OPENAI_API_KEY", "").strip() or None,
        openai_base_url=_url(env, "OPENAI_BASE_URL", None),
        openai_model=model,
        database_url=db_url,
        port=_int(env, "PORT", 3000, 1, 65535),
        host=env.get("HOST", "").strip() or "0.0.0.0",
        health_port=_int(env, "HEALTH_PORT", 0, 0, 65535) or None,
        run_scheduler=_bool(env, "RUN_SCHEDULER", True),
        log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
        log_format=_choice(env, "LOG_FORMAT", "text", ("text", "json")),
        # SQLite lives beside one deployment, so migrating at start is safe; on Postgres an
        # operator usually runs `switchboard migrate` as a release step.
        auto_migrate=_bool(env, "AUTO_MIGRATE", db_url.startswith("sqlite")),
        db_pool_size=_int(env, "DB_POOL_SIZE", 5, 1, 1000),
        db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 10, 0, 1000),
        db_pgbouncer=_bool(env, "DB_PGBOUNCER", False),
        retention_days=_int(env, "RETENTION_DAYS", 90, 0, 36500),
        llm_timeout=_float(env, "LLM_TIMEOUT", 60.0),
        llm_max_retries=_int(env, "LLM_MAX_RETRIES", 2, 0, 10),
        agent_max_steps=_int(env, "AGENT_MAX_STEPS", 8, 1, 50),
        agent_deadline=_float(env, "AGENT_DEADLINE_SECONDS", 90.0),
        agent_token_budget=_int(env, "AGENT_TOKEN_BUDGET", 100_000, 1_000, 10_000_000),
        history_token_budget=_int(env, "HISTORY_TOKEN_BUDGET", 12_000, 500, 1_000_000),
        stream_interval=_float(env, "STREAM_UPDATE_SECONDS", 1.0),
        tools=tools,
    )
