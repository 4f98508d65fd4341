"""One Settings object, read once from the environment (and `.env`), so nothing else reads os.environ."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bot.controls.prices import published_prices
from tools.mcp_servers.mcp_config import McpConfigError, McpServerConfig, load_servers
from tools.toolkit.context import ToolSettings

DEFAULT_MODEL = "gpt-5.4-mini"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/switchboard.db"
DEFAULT_MAX_OUTPUT_TOKENS = 8_192  # bounds a runaway answer; reasoning models spend part of it thinking
# USD per million tokens (input, output), from LiteLLM's published table (bot/controls/pricing/SOURCES.md);
# MODEL_PRICES adds to or overrides these. A model missing here is recorded with tokens but no cost.
DEFAULT_PRICES: dict[str, tuple[float, float]] = dict(published_prices())
DEFAULT_CONTEXT_TOKENS = 8_192  # unknown models (a local server's default window is often this small)

# Context windows of well-known models, by name prefix (after any "provider/" part); the longest
# matching prefix wins. OPENAI_CONTEXT_TOKENS overrides it, as it must for Azure deployments and
# for Ollama, whose window is its num_ctx setting, not the model's.
CONTEXT_WINDOWS = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gemini-2": 1_048_576,
    "gemini-3": 1_048_576,
    "llama-3.1": 131_072,
    "llama3.1": 131_072,
    "llama-3.3": 131_072,
    "llama3.3": 131_072,
    "qwen2.5": 32_768,
    "qwen3": 40_960,
    "mistral": 32_768,
}
OUTPUT_TOKENS_PARAMS = ("max_completion_tokens", "max_tokens")


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
    slack_client_id: str | None = None  # with the secret: OAuth install for many workspaces
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_token_key: str | None = field(default=None, repr=False)  # Fernet key for stored tokens
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_model: str = DEFAULT_MODEL
    azure_endpoint: str | None = None  # AZURE_OPENAI_ENDPOINT: use AsyncAzureOpenAI
    openai_api_version: str | None = None  # OPENAI_API_VERSION, for Azure
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    database_url: str = DEFAULT_DATABASE_URL
    database_listen_url: str | None = field(default=None, repr=False)  # direct, for LISTEN
    port: int = 3000
    host: str = "0.0.0.0"
    health_port: int | None = None
    slack_max_body_bytes: int = 512 * 1024
    run_scheduler: bool = True
    log_level: str = "INFO"
    log_format: str = "text"
    log_message_text: bool = False  # LOG_MESSAGE_TEXT: logs may carry what people wrote
    auto_migrate: bool = True
    db_pool_size: int = 5
    db_max_overflow: int = 10
    db_pgbouncer: bool = False
    db_processes: int = 2  # processes sharing the server's connections (doctor's pool check)
    retention_days: int = 90
    llm_timeout: float = 60.0
    llm_max_retries: int = 2
    agent_max_steps: int = 8
    agent_deadline: float = 90.0
    agent_token_budget: int = 100_000
    history_token_budget: int = 12_000
    max_tool_calls_per_turn: int = 10
    max_tool_calls: int = 40
    tool_concurrency: int = 4
    stream_interval: float = 1.0
    answer_max_chars: int = 100_000
    slack_max_messages_per_answer: int = 10
    slack_unfurl_links: bool = False
    user_max_concurrent_runs: int = 3
    extract_workers: int = 2
    openai_vision: bool = False
    file_max_bytes: int = 10_000_000
    file_token_budget: int = 8_000
    tools: ToolSettings = field(default_factory=ToolSettings)
    user_daily_tokens: int = 0  # 0 = no cap; admins may override per channel
    channel_daily_tokens: int = 0
    model_prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    mcp_servers: tuple[McpServerConfig, ...] = ()
    mcp_check_seconds: float = 30.0
    mcp_ready_seconds: float = 20.0  # readiness and early questions wait this long for MCP servers
    write_approval_seconds: float = 3_600.0  # how long a parked write call waits for Approve
    work_lease_seconds: float = 30.0  # a killed process's turns and commands are redone after this
    work_concurrency: int = 100  # jobs (answers, commands, digests) one process runs at once
    work_poll_seconds: float = 0.5  # how often an idle process looks for work it was not woken for
    shutdown_drain_seconds: float = 20.0  # SIGTERM: answers in flight finish within this or are handed over

    @property
    def oauth(self) -> bool:
        """Installed per workspace through /slack/install, tokens in the database."""
        return bool(self.slack_client_id and self.slack_client_secret)

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url or self.azure_endpoint)


def context_window(model: str) -> int:
    """The known window of `model` by name prefix, else a safe default."""
    name = model.lower().rsplit("/", 1)[-1]
    matches = [prefix for prefix in CONTEXT_WINDOWS if name.startswith(prefix)]
    return CONTEXT_WINDOWS[max(matches, key=len)] if matches else DEFAULT_CONTEXT_TOKENS


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}.")
    return raw


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


def _listen_url(env: Mapping[str, str]) -> str | None:
    """DATABASE_LISTEN_URL: a direct Postgres URL (not through a transaction pool) for LISTEN."""
    raw = env.get("DATABASE_LISTEN_URL", "").strip()
    if not raw:
        return None
    try:
        url = database_url(raw)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("DATABASE_URL", "DATABASE_LISTEN_URL")) from None
    if not url.startswith("postgresql"):
        raise ConfigError("DATABASE_LISTEN_URL must be a postgresql:// URL (LISTEN is Postgres's).")
    return url


LOG_LEVELS = ("info", "debug", "warning", "error", "critical")  # the first is the default


def _token(env: Mapping[str, str], name: str, prefix: str) -> str | None:
    value = env.get(name, "").strip()
    if value and not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix!r}. Get it from {WHERE[name]}.")
    return value or None


def _fernet_key(key: str | None) -> bool:
    from cryptography.fernet import Fernet

    try:
        Fernet(key or "")
    except ValueError:
        return False
    return True


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
    client_id = env.get("SLACK_CLIENT_ID", "").strip() or None
    client_secret = env.get("SLACK_CLIENT_SECRET", "").strip() or None
    token_key = env.get("SLACK_TOKEN_KEY", "").strip() or None
    if bool(client_id) != bool(client_secret):
        raise ConfigError("Set both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (OAuth install), or neither.")
    if client_id and app_token:
        raise ConfigError(
            "SLACK_CLIENT_ID (install in many workspaces) needs HTTP mode: Slack sends installers "
            "back to /slack/oauth_redirect. Unset SLACK_APP_TOKEN and set SLACK_SIGNING_SECRET."
        )
    if client_id and not _fernet_key(token_key):
        raise ConfigError(
            "SLACK_TOKEN_KEY must be a Fernet key when SLACK_CLIENT_ID is set (installed tokens are "
            "stored encrypted); make one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        )
    if need_slack:
        if not bot_token and not client_id:
            raise ConfigError(
                f"SLACK_BOT_TOKEN is not set. Get it from {WHERE['SLACK_BOT_TOKEN']} (one workspace), "
                "or set SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_TOKEN_KEY instead to install "
                "the app in many workspaces through /slack/install (OAuth mode, HTTP only)."
            )
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
    trusted = frozenset(
        h.strip().lower() for h in env.get("EGRESS_TRUSTED_HOSTS", "").split(",") if h.strip()
    )
    model = env.get("OPENAI_MODEL", "").strip() or DEFAULT_MODEL
    db_url = database_url(env.get("DATABASE_URL", "").strip())
    if len(model) > 100:  # the run.model column
        raise ConfigError(f"OPENAI_MODEL must be at most 100 characters, got {len(model)}.")
    tools = ToolSettings(
        open_meteo_url=_url(env, "OPEN_METEO_URL", "https://api.open-meteo.com") or "",
        open_meteo_geocoding_url=_url(env, "OPEN_METEO_GEOCODING_URL", "https://geocoding-api.open-meteo.com")
        or "",
        searxng_url=_url(env, "SEARXNG_URL", None),
        http_allow_hosts=allow,
        egress_trusted_hosts=trusted,
        approval_seconds=_float(env, "EGRESS_APPROVAL_SECONDS", 60.0),
        model=model,
        summarize_token_budget=_int(env, "SUMMARIZE_TOKEN_BUDGET", 200_000, 10_000, 100_000_000),
        extract_deadline=_float(env, "EXTRACT_DEADLINE_SECONDS", 10.0),
        max_output_tokens=_int(env, "OPENAI_MAX_OUTPUT_TOKENS", DEFAULT_MAX_OUTPUT_TOKENS, 16, 1_000_000),
        output_tokens_param=_choice(env, "OPENAI_OUTPUT_TOKENS_PARAM", OUTPUT_TOKENS_PARAMS),
    )
    azure_endpoint = _url(env, "AZURE_OPENAI_ENDPOINT", None)
    api_version = env.get("OPENAI_API_VERSION", "").strip() or None
    if azure_endpoint and not api_version:
        raise ConfigError(
            "AZURE_OPENAI_ENDPOINT is set but OPENAI_API_VERSION is not: set it to your Azure "
            "OpenAI API version (e.g. 2024-10-21), or use the v1 endpoint through OPENAI_BASE_URL."
        )
    return Settings(
        slack_bot_token=bot_token or "",
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_api_url=slack_api_url,
        slack_client_id=client_id,
        slack_client_secret=client_secret,
        slack_token_key=token_key,
        openai_api_key=(env.get("AZURE_OPENAI_API_KEY", "").strip() if azure_endpoint else "")
        or env.get("OPENAI_API_KEY", "").strip()
        or None,
        openai_base_url=_url(env, "OPENAI_BASE_URL", None),
        openai_model=model,
        azure_endpoint=azure_endpoint,
        openai_api_version=api_version,
        context_tokens=_int(env, "OPENAI_CONTEXT_TOKENS", context_window(model), 1_000, 10_000_000),
        database_url=db_url,
        database_listen_url=_listen_url(env),
        port=_int(env, "PORT", 3000, 1, 65535),
        host=env.get("HOST", "").strip() or "0.0.0.0",
        health_port=_int(env, "HEALTH_PORT", 0, 0, 65535) or None,
        slack_max_body_bytes=_int(env, "SLACK_MAX_BODY_BYTES", 512 * 1024, 16 * 1024, 64 * 1024 * 1024),
        run_scheduler=_bool(env, "RUN_SCHEDULER", True),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS).upper(),
        log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
        log_message_text=_bool(env, "LOG_MESSAGE_TEXT", False),
        # SQLite lives beside one deployment, so migrating at start is safe; on Postgres an
        # operator usually runs `switchboard migrate` as a release step.
        auto_migrate=_bool(env, "AUTO_MIGRATE", db_url.startswith("sqlite")),
        db_pool_size=_int(env, "DB_POOL_SIZE", 5, 1, 1000),
        db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 10, 0, 1000),
        db_pgbouncer=_bool(env, "DB_PGBOUNCER", False),
        db_processes=_int(env, "DB_PROCESSES", 2, 1, 10_000),
        retention_days=_int(env, "RETENTION_DAYS", 90, 0, 36500),
        llm_timeout=_float(env, "LLM_TIMEOUT", 60.0),
        llm_max_retries=_int(env, "LLM_MAX_RETRIES", 2, 0, 10),
        agent_max_steps=_int(env, "AGENT_MAX_STEPS", 8, 1, 50),
        agent_deadline=_float(env, "AGENT_DEADLINE_SECONDS", 90.0),
        agent_token_budget=_int(env, "AGENT_TOKEN_BUDGET", 100_000, 1_000, 10_000_000),
        history_token_budget=_int(env, "HISTORY_TOKEN_BUDGET", 12_000, 500, 1_000_000),
        max_tool_calls_per_turn=_int(env, "AGENT_MAX_TOOL_CALLS_PER_TURN", 10, 1, 100),
        max_tool_calls=_int(env, "AGENT_MAX_TOOL_CALLS", 40, 1, 1_000),
        tool_concurrency=_int(env, "AGENT_TOOL_CONCURRENCY", 4, 1, 64),
        stream_interval=_float(env, "STREAM_UPDATE_SECONDS", 1.0),
        answer_max_chars=_int(env, "ANSWER_MAX_CHARS", 100_000, 1_000, 10_000_000),
        slack_max_messages_per_answer=_int(env, "SLACK_MAX_MESSAGES_PER_ANSWER", 10, 1, 100),
        slack_unfurl_links=_bool(env, "SLACK_UNFURL_LINKS", False),
        user_max_concurrent_runs=_int(env, "USER_MAX_CONCURRENT_RUNS", 3, 0, 1_000),
        extract_workers=_int(env, "EXTRACT_WORKERS", 2, 1, 32),
        openai_vision=_bool(env, "OPENAI_VISION", False),
        file_max_bytes=_int(env, "FILE_MAX_BYTES", 10_000_000, 1_000, 1_000_000_000),
        file_token_budget=_int(env, "FILE_TOKEN_BUDGET", 8_000, 100, 1_000_000),
        tools=tools,
        user_daily_tokens=_int(env, "USER_DAILY_TOKENS", 0, 0, 1_000_000_000),
        channel_daily_tokens=_int(env, "CHANNEL_DAILY_TOKENS", 0, 0, 1_000_000_000),
        model_prices=_prices(env),
        mcp_servers=_mcp_servers(env),
        mcp_check_seconds=_float(env, "MCP_CHECK_SECONDS", 30.0),
        mcp_ready_seconds=_float(env, "MCP_READY_SECONDS", 20.0),
        write_approval_seconds=_float(env, "WRITE_APPROVAL_SECONDS", 3_600.0),
        work_lease_seconds=_float(env, "WORK_LEASE_SECONDS", 30.0),
        work_poll_seconds=_float(env, "WORK_POLL_SECONDS", 0.5),
        work_concurrency=_int(env, "WORK_CONCURRENCY", 100, 1, 10_000),
        shutdown_drain_seconds=_float(env, "SHUTDOWN_DRAIN_SECONDS", 20.0),
    )


def _prices(env: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    raw = env.get("MODEL_PRICES", "").strip()
    prices = dict(DEFAULT_PRICES)
    if not raw:
        return prices
    try:
        given = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"MODEL_PRICES must be JSON, got {raw[:100]!r}.") from None
    shape = 'MODEL_PRICES must look like {"model": [input_usd_per_mtok, output_usd_per_mtok]}'
    if not isinstance(given, dict):
        raise ConfigError(shape + ".")
    for model, pair in given.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in pair)
        ):
            raise ConfigError(f"{shape}; {model!r} has {pair!r}.")
        prices[str(model)] = (float(pair[0]), float(pair[1]))
    return prices


def _mcp_servers(env: Mapping[str, str]) -> tuple[McpServerConfig, ...]:
    path = env.get("MCP_SERVERS", "").strip()
    if not path:
        return ()
    try:
        return load_servers(path, env)
    except McpConfigError as exc:
        raise ConfigError(f"MCP_SERVERS: {exc}") from None
