"""Every setting, in one place: one typed field per environment variable (the field's name in
upper case), with its default, bounds and one-line doc. Read once, by `load_settings`; the settings
reference (docs/reference/settings.md) is generated from these fields, and nothing else reads
os.environ for a setting.

Defaults of values that `orchestrators` and `tools` use are defined there (Limits, ToolSettings),
so those layers run without `bot`; the fields here take them from there and add the environment
name, the bounds and the doc.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import annotated_types
from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.controls.prices import published_prices
from orchestrators.agent.state import Limits
from tools.mcp_servers.mcp_config import McpConfigError, McpServerConfig, load_servers
from tools.toolkit.context import ToolSettings
from tools.toolkit.errors import ConfigurationError

DEFAULT_MODEL = ToolSettings.model
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/switchboard.db"
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

WHERE = {
    "SLACK_BOT_TOKEN": "Slack app settings > OAuth & Permissions > Bot User OAuth Token (xoxb-...)",
    "SLACK_SIGNING_SECRET": "Slack app settings > Basic Information > App Credentials > Signing Secret",
    "SLACK_APP_TOKEN": "Slack app settings > Basic Information > App-Level Tokens "
    "(scope connections:write, xapp-...)",
}
TOKEN_PREFIXES = {"slack_bot_token": "xoxb-", "slack_app_token": "xapp-"}
URL_FIELDS = (
    "slack_api_url",
    "openai_base_url",
    "azure_openai_endpoint",
    "open_meteo_url",
    "open_meteo_geocoding_url",
    "searxng_url",
)

Seconds = Annotated[float, Field(gt=0)]  # a duration: any positive number of seconds

_TOOLS = ToolSettings()
_LIMITS = Limits()


def _doc(
    description: str,
    default: Any = PydanticUndefined,
    *,
    shown: str | None = None,
    title: str | None = None,
    secret: bool = False,
    **extra: Any,
) -> Any:
    """A field: its one-line doc, its default, then its bounds (`ge`, `le`, ...) as in `Field`.
    `shown` replaces the default in the docs table (when the default is worked out from other
    settings), `title` is the short label App Home shows; a `secret` stays out of repr and is
    redacted from log lines."""
    schema: dict[str, Any] = {"shown_default": shown} if shown else {}
    if secret:
        schema["secret"] = True
        extra["repr"] = False
    return Field(default, description=description, title=title, json_schema_extra=schema or None, **extra)


def is_secret(field: str) -> bool:
    extra = Settings.model_fields[field].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


class ConfigError(ConfigurationError, ValueError):
    """A setting is missing or malformed; the message names it and says where to get it. Also a
    ValueError, so pydantic reports it like any other invalid value (see `explain`). `setting`: the
    field at fault, when it is one field."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class Settings(BaseSettings):
    """Every setting Switchboard reads. Built by `load_settings`, never from os.environ elsewhere."""

    model_config = SettingsConfigDict(
        case_sensitive=False, env_ignore_empty=True, extra="ignore", frozen=True, str_strip_whitespace=True
    )

    # Slack
    slack_bot_token: str = _doc(
        "bot token (`xoxb-`) of the one workspace",
        "",
        shown="required (unless `SLACK_CLIENT_ID` is set)",
        secret=True,
    )
    slack_client_id: str | None = _doc(
        "with `SLACK_CLIENT_SECRET`: install in many workspaces through `/slack/install`", None
    )
    slack_client_secret: str | None = _doc(
        "the app's client secret (*Basic Information → App Credentials*)", None, secret=True
    )
    slack_token_key: str | None = _doc(
        "Fernet key that encrypts installed workspaces' bot tokens in the database",
        None,
        shown="required with `SLACK_CLIENT_ID`",
        secret=True,
    )
    slack_signing_secret: str | None = _doc(
        "verifies that requests come from Slack", None, shown="required in HTTP mode", secret=True
    )
    slack_app_token: str | None = _doc("app-level token (`xapp-`); when set, Socket Mode", None, secret=True)
    slack_api_url: str = _doc("Web API base (GovSlack, tests)", "https://slack.com/api/")

    # Model
    openai_api_key: str | None = _doc("key for the model endpoint", None, secret=True)
    openai_base_url: str | None = _doc(
        "any OpenAI-compatible endpoint (see Model providers)", None, shown="OpenAI"
    )
    openai_model: str = _doc(
        "model name (for Azure's classic endpoint: the deployment name)", DEFAULT_MODEL, max_length=100
    )  # max_length: the run.model column
    openai_context_tokens: int = _doc(
        "the model's context window; known models (gpt-5, gpt-4.1, gpt-4o, o3, o4-mini, gemini-2/3, "
        f"llama 3.1/3.3, qwen2.5, qwen3, mistral) have theirs, others get `{DEFAULT_CONTEXT_TOKENS}`. "
        "System prompt, tool schemas, history and answer must fit in it",
        DEFAULT_CONTEXT_TOKENS,
        shown="from the model name",
        ge=1_000,
        le=10_000_000,
    )
    openai_max_output_tokens: int = _doc(
        "cap on every model call's answer, reasoning tokens included (at most a quarter of a small "
        "window); a cut-off answer says so",
        _TOOLS.max_output_tokens,
        ge=16,
        le=1_000_000,
    )
    openai_output_tokens_param: Literal["max_completion_tokens", "max_tokens"] = _doc(
        "the name of the output cap's parameter: `max_tokens` for servers that read only that",
        _TOOLS.output_tokens_param,
    )
    azure_openai_endpoint: str | None = _doc(
        "`https://<resource>.openai.azure.com`: uses Azure's deployment URLs and `api-key` header", None
    )
    openai_api_version: str | None = _doc(
        "Azure API version, required with `AZURE_OPENAI_ENDPOINT` (e.g. `2024-10-21`)", None
    )
    azure_openai_api_key: str | None = _doc(
        "Azure key; `OPENAI_API_KEY` is used when unset", None, secret=True
    )
    openai_vision: bool = _doc(
        "`true` if the model accepts images: shared PNG/JPEG/GIF/WebP go to it as `image_url` parts; "
        "otherwise the user is told images can't be read",
        False,
    )
    llm_timeout: Seconds = _doc("seconds for one model call", _LIMITS.llm_timeout)
    llm_max_retries: int = _doc("retries of a failed model call", 2, ge=0, le=10)
    model_prices: Annotated[dict[str, tuple[float, float]], NoDecode] = _doc(
        'JSON `{"model": [input_usd_per_mtok, output_usd_per_mtok]}`, added to or overriding the '
        "vendored table; each run's cost is recorded from it (unknown models: no cost, shown as "
        '"price unknown")',
        shown="LiteLLM's table (`bot/controls/pricing/`)",
        default_factory=lambda: dict(DEFAULT_PRICES),
        repr=False,
    )

    # Database
    database_url: str = _doc(
        "`sqlite:///path` or `postgresql://user:pass@host/db` (install `.[postgres]`); libpq options "
        "such as `?sslmode=require&connect_timeout=10&application_name=...` are understood",
        "sqlite:///./data/switchboard.db",
        validate_default=True,
    )
    auto_migrate: bool = _doc(
        "migrate the schema at start (under a lock); otherwise `serve`/`clock` refuse a database that "
        "is behind and say to run `switchboard migrate`",
        True,
        shown="`true` on SQLite, `false` on Postgres",
    )
    db_pool_size: int = _doc("database connections kept per process (Postgres)", 5, ge=1, le=1000)
    db_max_overflow: int = _doc(
        "extra connections a process may open under load (Postgres)", 10, ge=0, le=1000
    )
    db_pgbouncer: bool = _doc(
        "`true` behind PgBouncer in transaction pooling mode (turns prepared-statement caching off)", False
    )
    database_listen_url: str | None = _doc(
        "Postgres only: a direct URL (not through PgBouncer's transaction pool) for the one connection "
        "per process that LISTENs for new work, so another process's message starts here at once; "
        "unset, `DATABASE_URL` is used unless `DB_PGBOUNCER` is on, when processes fall back to "
        "polling every `WORK_POLL_SECONDS`",
        None,
        secret=True,
    )
    db_processes: int = _doc(
        "how many Switchboard processes share the Postgres server (web processes, workers of each, and "
        "the clock); `switchboard doctor` checks that their pools fit its `max_connections`",
        2,
        ge=1,
        le=10_000,
    )
    retention_days: int = _doc(
        "messages, runs with their steps and feedback, and finished jobs older than this are "
        "deleted by the process that runs the scheduler; `0` keeps everything",
        90,
        ge=0,
        le=36_500,
    )

    # Serving
    port: int = _doc("HTTP mode port", 3000, ge=1, le=65535)
    host: str = _doc(
        "address the HTTP server (and `HEALTH_PORT`) binds; `127.0.0.1` behind a local proxy", "0.0.0.0"
    )
    health_port: int | None = _doc(
        "Socket Mode and `clock`: serve `/healthz`, `/readyz` and `/metrics` on this port",
        None,
        ge=0,
        le=65535,
    )
    slack_max_body_bytes: int = _doc(
        "larger request bodies get 413 before they are read into memory or reach Bolt",
        512 * 1024,
        ge=16 * 1024,
        le=64 * 1024 * 1024,
    )
    run_scheduler: bool = _doc("run the digest scheduler in this process", True)
    log_level: Literal["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL"] = _doc(
        "how much is logged; secrets are redacted from every line", "INFO"
    )
    log_format: Literal["text", "json"] = _doc(
        "`json`: one JSON object per line (time, level, logger, message, exception)", "text"
    )
    log_message_text: bool = _doc(
        "`true` lets logs carry what people wrote (questions, answers, tool arguments and errors, the "
        "libraries' DEBUG request bodies); otherwise a line gives only the text's length, at every level",
        False,
    )

    # Agent runs
    agent_max_steps: int = _doc(
        "tool rounds per run before the model must answer", _LIMITS.max_steps, ge=1, le=50
    )
    agent_deadline_seconds: Seconds = _doc("wall-clock limit of one run", _LIMITS.deadline)
    agent_token_budget: int = _doc("tokens one run may spend", _LIMITS.token_budget, ge=1_000, le=10_000_000)
    history_token_budget: int = _doc(
        "how much of a thread's history the model sees (newest kept; also bounded by the context window)",
        _LIMITS.history_tokens,
        ge=500,
        le=1_000_000,
    )
    agent_max_tool_calls_per_turn: int = _doc(
        "tool calls run from one model turn; extra calls get an error result the model reads",
        _LIMITS.max_tool_calls_per_turn,
        ge=1,
        le=100,
    )
    agent_max_tool_calls: int = _doc(
        "tool calls per run; then the model must answer", _LIMITS.max_tool_calls, ge=1, le=1_000
    )
    agent_tool_concurrency: int = _doc(
        "tool calls of one turn running at the same time", _LIMITS.tool_concurrency, ge=1, le=64
    )
    summarize_token_budget: int = _doc(
        "prompt tokens one `/summarize` or digest may spend; longer periods cover their newest part and "
        "say so",
        _TOOLS.summarize_token_budget,
        ge=10_000,
        le=100_000_000,
    )

    # Answers in Slack
    stream_update_seconds: Seconds = _doc(
        "how often a streamed answer is edited in channels (Slack allows about one edit a second)", 1.0
    )
    answer_max_chars: int = _doc(
        "longest answer shown; a longer one is cut and says where", 100_000, ge=1_000, le=10_000_000
    )
    slack_max_messages_per_answer: int = _doc(
        "messages one answer may take in a thread; past it the last one says so and the whole answer "
        "follows as `answer.md` (needs `files:write`)",
        10,
        ge=1,
        le=100,
    )
    slack_unfurl_links: bool = _doc(
        "`true` lets Slack preview links in answers, `/ask` results and digests posted in public channels "
        "by runs that read nothing private; elsewhere links never unfurl (see Privacy)",
        False,
    )
    user_max_concurrent_runs: int = _doc(
        "answers one person may have in flight at once (`0` = no cap); the next one waits in line and "
        "starts as soon as one ends",
        3,
        ge=0,
        le=1_000,
    )

    # Tools
    open_meteo_url: str = _doc("forecast API (self-hosted Open-Meteo works)", _TOOLS.open_meteo_url)
    open_meteo_geocoding_url: str = _doc("geocoding API", _TOOLS.open_meteo_geocoding_url)
    searxng_url: str | None = _doc(
        "SearXNG instance for `search_web`; unset uses the keyless `ddgs` package", _TOOLS.searxng_url
    )
    tool_http_allow_hosts: Annotated[frozenset[str], NoDecode] = _doc(
        "comma list of `host[:port]` that `call_api` may reach even if private", _TOOLS.http_allow_hosts
    )

    # Daily caps
    user_daily_tokens: int = _doc(
        "model tokens one person may spend per day (UTC); 0 = no cap; admins may override per channel. "
        "A run reserves its tokens before its model call and is refused once a cap is used up (saying "
        "when it resets); a run that goes ahead may spend only what it reserved",
        0,
        title="Daily tokens per person (0 = no cap)",
        ge=0,
        le=1_000_000_000,
    )
    channel_daily_tokens: int = _doc(
        "model tokens one channel may spend per day (UTC); 0 = no cap; admins may override per channel",
        0,
        title="Daily tokens for the channel (0 = no cap)",
        ge=0,
        le=1_000_000_000,
    )

    # MCP and approvals
    mcp_servers: str | None = _doc(
        "path to a JSON file of MCP tool servers (see MCP tool servers); its `${NAME}`s are read from "
        "the environment",
        None,
    )
    write_approval_seconds: Seconds = _doc(
        "how long a parked write call (MCP `write` tools, `call_api` writes) waits for the requester's "
        "Approve before it is dropped with a message",
        3_600.0,
    )

    # Durable work
    work_lease_seconds: Seconds = _doc(
        "how long a message, slash command or digest fire time being worked on stays leased to its "
        "process without a renewal (renewed every third of it); after a kill -9, another or a restarted "
        "process redoes the work once this passes",
        30.0,
    )
    work_concurrency: int = _doc(
        "jobs (answers, slash commands, digests, approvals) one process runs at once; more wait in the "
        "database for any process with room",
        100,
        ge=1,
        le=10_000,
    )
    work_poll_seconds: Seconds = _doc(
        "how often an idle process looks for work nobody woke it for: on SQLite, and on Postgres without "
        "a LISTEN connection, other processes' new work; with LISTEN on, only leases that lapsed (a "
        "killed process's work)",
        0.5,
    )
    shutdown_drain_seconds: Seconds = _doc(
        "on SIGTERM, how long answers in flight may take to finish; the rest are handed back (their "
        "leases released) so another process, or this one restarted, finishes them at once. The stop "
        "takes a few seconds more than this: keep it 10 s below the host's kill timeout (Heroku: 30 s, "
        "Kubernetes: `terminationGracePeriodSeconds`), or the kill lands before the hand-over and the "
        "answers wait for their leases to lapse",
        20.0,
    )
    mcp_check_seconds: Seconds = _doc(
        "how often an idle MCP connection is checked and its tool list re-read", 30.0
    )
    mcp_ready_seconds: Seconds = _doc(
        "after start, how long `/readyz` (503 meanwhile) and early questions wait for each MCP server's "
        "first connect to succeed or fail; after it they go ahead without a server still connecting",
        20.0,
    )

    # Files
    file_max_bytes: int = _doc(
        "largest shared file the bot downloads, counted on the bytes received; bigger ones get a clear reply",
        10_000_000,
        ge=1_000,
        le=1_000_000_000,
    )
    file_token_budget: int = _doc(
        "tokens of file text one message may add (about 4 characters a token); longer files are "
        "truncated with a note",
        8_000,
        ge=100,
        le=1_000_000,
    )
    extract_workers: int = _doc("worker processes that turn HTML pages and PDFs into text", 2, ge=1, le=32)
    extract_deadline_seconds: Seconds = _doc(
        "one HTML/PDF parse may take this long; then its worker process is killed and replaced",
        _TOOLS.extract_deadline,
    )

    # Egress
    egress_trusted_hosts: Annotated[frozenset[str], NoDecode] = _doc(
        "comma list of `host[:port]` that tools may send requests to after a run read non-public content "
        "(see Privacy); `TOOL_HTTP_ALLOW_HOSTS` does not count",
        _TOOLS.egress_trusted_hosts,
    )
    egress_approval_seconds: Seconds = _doc(
        "how long the requester has to approve a request to any other host before nothing is sent",
        _TOOLS.approval_seconds,
    )

    _mcp_server_configs: tuple[McpServerConfig, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _worked_out_defaults(cls, data: Any) -> Any:
        """Defaults that follow from other settings: the model's window, and migrating at start on
        SQLite (it lives beside one deployment; on Postgres an operator usually runs `switchboard
        migrate` as a release step)."""
        if not isinstance(data, Mapping):
            return data
        values = dict(data)
        model = str(values.get("openai_model") or DEFAULT_MODEL).strip()
        values.setdefault("openai_context_tokens", context_window(model))
        values.setdefault(
            "auto_migrate", database_url(str(values.get("database_url") or "")).startswith("sqlite")
        )
        return values

    @field_validator("slack_bot_token", "slack_app_token")
    @classmethod
    def _token_prefix(cls, value: str | None, info: ValidationInfo) -> str | None:
        prefix, name = TOKEN_PREFIXES[str(info.field_name)], str(info.field_name).upper()
        if value and not value.startswith(prefix):
            raise ValueError(f"{name} must start with {prefix!r}. Get it from {WHERE[name]}.")
        return value

    @field_validator(*URL_FIELDS)
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"{str(info.field_name).upper()} must be an http(s) URL, got {value!r}.")
        if info.field_name == "slack_api_url" and not value.endswith("/"):
            return value + "/"
        return value

    @field_validator("log_level", "log_format", "openai_output_tokens_param", mode="before")
    @classmethod
    def _any_case(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return database_url(value)

    @field_validator("database_listen_url")
    @classmethod
    def _listen_url(cls, value: str | None) -> str | None:
        """A direct Postgres URL (not through a transaction pool) for LISTEN."""
        if value is None:
            return None
        try:
            url = database_url(value)
        except ValueError as exc:
            raise ValueError(str(exc).replace("DATABASE_URL", "DATABASE_LISTEN_URL")) from None
        if not url.startswith("postgresql"):
            raise ValueError("DATABASE_LISTEN_URL must be a postgresql:// URL (LISTEN is Postgres's).")
        return url

    @field_validator("health_port")
    @classmethod
    def _zero_is_unset(cls, value: int | None) -> int | None:
        return value or None

    @field_validator("tool_http_allow_hosts", "egress_trusted_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> Any:
        return prices(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what `load_settings` passes: the environment is read there, once (and tests pass
        their own mapping instead)."""
        return (init_settings,)

    @property
    def mcp_server_configs(self) -> tuple[McpServerConfig, ...]:
        """The servers MCP_SERVERS names, read and checked by `load_settings`."""
        return self._mcp_server_configs

    @property
    def oauth(self) -> bool:
        """Installed per workspace through /slack/install, tokens in the database."""
        return bool(self.slack_client_id and self.slack_client_secret)

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url or self.azure_openai_endpoint)

    @property
    def model_api_key(self) -> str | None:
        """The key the model client sends: Azure's own, when the endpoint is Azure's and it is set."""
        if self.azure_openai_endpoint and self.azure_openai_api_key:
            return self.azure_openai_api_key
        return self.openai_api_key

    @property
    def tools(self) -> ToolSettings:
        """What the tools may know of these settings (they import nothing from `bot`)."""
        return ToolSettings(
            open_meteo_url=self.open_meteo_url,
            open_meteo_geocoding_url=self.open_meteo_geocoding_url,
            searxng_url=self.searxng_url,
            http_allow_hosts=self.tool_http_allow_hosts,
            egress_trusted_hosts=self.egress_trusted_hosts,
            approval_seconds=self.egress_approval_seconds,
            model=self.openai_model,
            summarize_token_budget=self.summarize_token_budget,
            extract_deadline=self.extract_deadline_seconds,
            max_output_tokens=self.openai_max_output_tokens,
            output_tokens_param=self.openai_output_tokens_param,
        )

    def secrets(self) -> list[str]:
        """The values of the secret settings, for redacting log lines."""
        found = (getattr(self, name) for name in type(self).model_fields if is_secret(name))
        return [value for value in found if isinstance(value, str) and value]

    def agent_limits(self) -> Limits:
        """The limits that end one agent run."""
        return Limits(
            max_steps=self.agent_max_steps,
            deadline=self.agent_deadline_seconds,
            token_budget=self.agent_token_budget,
            history_tokens=self.history_token_budget,
            llm_timeout=self.llm_timeout,
            context_tokens=self.openai_context_tokens,
            max_tool_calls_per_turn=self.agent_max_tool_calls_per_turn,
            max_tool_calls=self.agent_max_tool_calls,
            tool_concurrency=self.agent_tool_concurrency,
        )


def env_name(field: str) -> str:
    """The environment variable of a setting: its field name in upper case."""
    if field not in Settings.model_fields:
        raise KeyError(field)
    return field.upper()


def bounds(field: str) -> tuple[float | None, float | None]:
    """(lowest, highest) a setting accepts, from its field; None where it has no such bound."""
    low: float | None = None
    high: float | None = None
    for rule in Settings.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge  # type: ignore[assignment]
        elif isinstance(rule, annotated_types.Gt):
            low = rule.gt  # type: ignore[assignment]
        elif isinstance(rule, annotated_types.Le):
            high = rule.le  # type: ignore[assignment]
    return low, high


def longest(field: str) -> int | None:
    """The most characters a setting takes, from its field; None when it has no such bound."""
    rules = Settings.model_fields[field].metadata
    return next((rule.max_length for rule in rules if isinstance(rule, annotated_types.MaxLen)), None)


def context_window(model: str) -> int:
    """The known window of `model` by name prefix, else a safe default."""
    name = model.lower().rsplit("/", 1)[-1]
    matches = [prefix for prefix in CONTEXT_WINDOWS if name.startswith(prefix)]
    return CONTEXT_WINDOWS[max(matches, key=len)] if matches else DEFAULT_CONTEXT_TOKENS


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


def prices(raw: str) -> dict[str, tuple[float, float]]:
    """MODEL_PRICES (JSON) over the published table."""
    merged = dict(DEFAULT_PRICES)
    try:
        given = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"MODEL_PRICES must be JSON, got {raw[:100]!r}.") from None
    shape = 'MODEL_PRICES must look like {"model": [input_usd_per_mtok, output_usd_per_mtok]}'
    if not isinstance(given, dict):
        raise ValueError(shape + ".")
    for model, pair in given.items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in pair)
        ):
            raise ValueError(f"{shape}; {model!r} has {pair!r}.")
        merged[str(model)] = (float(pair[0]), float(pair[1]))
    return merged


class _GivenEnv(EnvSettingsSource):
    """pydantic-settings' reading of environment variables (names in any case, empty means unset),
    from the mapping given instead of os.environ, so tests and `doctor` can pass their own."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._given = {k: v for k, v in env.items() if v.strip()}  # blank means unset, as before
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._given.items()}


def load_settings(
    env: Mapping[str, str] | None = None, *, need_slack: bool = True, need_slack_signing: bool = True
) -> Settings:
    """Read and check every setting; raises ConfigError naming the first bad one."""
    if env is None:
        from dotenv import load_dotenv

        # `.env` fills what the environment leaves unset (and MCP servers' ${NAME}s see it too)
        load_dotenv(Path.cwd() / ".env", override=False)
        env = os.environ
    try:
        settings = Settings(**_GivenEnv(env)())
    except ValidationError as exc:
        raise explain(exc) from None
    if settings.mcp_servers:
        try:
            settings._mcp_server_configs = load_servers(settings.mcp_servers, env)
        except McpConfigError as exc:
            raise ConfigError(f"MCP_SERVERS: {exc}") from None
    check_together(settings, need_slack=need_slack, need_slack_signing=need_slack_signing)
    return settings


def check_together(settings: Settings, *, need_slack: bool, need_slack_signing: bool) -> None:
    """The rules that span settings; ConfigError names the ones to change."""
    s = settings
    if bool(s.slack_client_id) != bool(s.slack_client_secret):
        raise ConfigError("Set both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (OAuth install), or neither.")
    if s.slack_client_id and s.slack_app_token:
        raise ConfigError(
            "SLACK_CLIENT_ID (install in many workspaces) needs HTTP mode: Slack sends installers "
            "back to /slack/oauth_redirect. Unset SLACK_APP_TOKEN and set SLACK_SIGNING_SECRET."
        )
    if s.slack_client_id and not _fernet_key(s.slack_token_key):
        raise ConfigError(
            "SLACK_TOKEN_KEY must be a Fernet key when SLACK_CLIENT_ID is set (installed tokens are "
            "stored encrypted); make one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        )
    if need_slack:
        if not s.slack_bot_token and not s.slack_client_id:
            raise ConfigError(
                f"SLACK_BOT_TOKEN is not set. Get it from {WHERE['SLACK_BOT_TOKEN']} (one workspace), "
                "or set SLACK_CLIENT_ID, SLACK_CLIENT_SECRET and SLACK_TOKEN_KEY instead to install "
                "the app in many workspaces through /slack/install (OAuth mode, HTTP only)."
            )
        if need_slack_signing and not s.slack_app_token and not s.slack_signing_secret:
            raise ConfigError(
                "Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode). "
                f"SLACK_APP_TOKEN: {WHERE['SLACK_APP_TOKEN']}. "
                f"SLACK_SIGNING_SECRET: {WHERE['SLACK_SIGNING_SECRET']}."
            )
    if s.azure_openai_endpoint and not s.openai_api_version:
        raise ConfigError(
            "AZURE_OPENAI_ENDPOINT is set but OPENAI_API_VERSION is not: set it to your Azure "
            "OpenAI API version (e.g. 2024-10-21), or use the v1 endpoint through OPENAI_BASE_URL."
        )


def _fernet_key(key: str | None) -> bool:
    from cryptography.fernet import Fernet

    try:
        Fernet(key or "")
    except ValueError:
        return False
    return True


def explain(exc: ValidationError) -> ConfigError:
    """The first problem of a ValidationError as one plain sentence naming the variable and what
    it accepts (the bounds and choices come from the field)."""
    error = exc.errors(include_url=False)[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    return ConfigError(_sentence(error, field), field if field in Settings.model_fields else None)


def _sentence(error: Any, field: str) -> str:
    name, raw, kind = field.upper(), error.get("input"), error["type"]
    if kind == "value_error":  # our own validators word the whole message
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if field not in Settings.model_fields:
        return f"{name}: {error['msg']}."
    low, high = bounds(field)
    if kind == "int_parsing":
        return f"{name} must be a whole number, got {raw!r}."
    if kind == "float_parsing":
        return f"{name} must be a number of seconds, got {raw!r}."
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{name} must be between {number(low)} and {number(high)}, got {raw}."
    if kind == "greater_than":
        return f"{name} must be positive, got {raw!r}."
    if kind == "bool_parsing":
        return f"{name} must be true or false, got {raw!r}."
    if kind == "literal_error":
        given = str(raw).lower()
        return f"{name} must be one of {', '.join(str(c).lower() for c in choices(field))}, got {given!r}."
    if kind == "string_too_long":
        return f"{name} must be at most {error['ctx']['max_length']} characters, got {len(str(raw))}."
    return f"{name}: {error['msg']}, got {raw!r}."


def choices(field: str) -> tuple[Any, ...]:
    """The values a Literal setting takes, in order (the first is the default's kin)."""
    annotation = Settings.model_fields[field].annotation
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


# The settings reference (docs/reference/settings.md) is generated from the fields above.
REFERENCE = Path("docs/reference/settings.md")
REGENERATE = "python -m bot settings --markdown > docs/reference/settings.md"


def describe(field: str) -> str:
    """One line about a setting, as the docs table has it: what it means, what it takes, its default."""
    info = Settings.model_fields[field]
    takes = allowed(field, info)
    return (
        f"{env_name(field)}: {info.description}"
        + (f"; takes {takes}" if takes else "")
        + (f"; default {shown_default(field, info)}")
    )


def allowed(field: str, info: FieldInfo) -> str:
    """What a setting accepts, in words, from its type and bounds."""
    low, high = bounds(field)
    options = choices(field)
    if options:
        return ", ".join(f"`{str(o).lower()}`" for o in options)
    if info.annotation is bool:
        return "`true`, `false`"
    if field in URL_FIELDS:
        return "http(s) URL"
    if low is not None and high is not None:
        return f"{number(low)} – {number(high)}"
    if low is not None:
        return "seconds, > 0" if info.annotation is float else f">= {number(low)}"
    longest = next(
        (rule.max_length for rule in info.metadata if isinstance(rule, annotated_types.MaxLen)), None
    )
    return f"at most {longest} characters" if longest else ""


def number(value: float | None) -> str:
    """1000000, not 1e+06: as an operator would type it."""
    return "" if value is None else str(int(value)) if value == int(value) else str(value)


def shown_default(field: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("shown_default"):
        return str(extra["shown_default"])
    value = info.get_default(call_default_factory=True)
    if value is None or value == "" or value == frozenset() or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def table_markdown() -> str:
    """The settings table, one row per field, in the order they are declared."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(
            f"| `{env_name(field)}` | {shown_default(field, info)} | {allowed(field, info)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


def reference_page() -> str:
    """docs/reference/settings.md, whole."""
    return (
        "# Settings\n\n"
        f"<!-- Generated from bot/settings.py; do not edit. Regenerate: `{REGENERATE}` -->\n\n"
        "Every setting is an environment variable (or a line of `.env` in the working directory; the "
        "environment wins). They are read once, at start, by `bot/settings.py`: one typed field per "
        "variable, named as the variable in lower case. A missing or malformed setting stops the start "
        "with one plain message naming it (exit code 2); `switchboard doctor` reports it too.\n\n"
        + table_markdown()
        + "\nWithout `OPENAI_API_KEY` and `OPENAI_BASE_URL` the bot still starts, with a warning: "
        "conversations answer that no model is configured, and code workflows run without their LLM "
        "steps.\n"
    )
