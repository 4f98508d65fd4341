"""What a tool may touch, passed in explicitly: tools hold no globals and import nothing above."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp
    from openai import AsyncOpenAI
    from slack_sdk.web.async_client import AsyncWebClient


@dataclass(frozen=True)
class ToolSettings:
    """Operator settings the tools need; `bot.config` builds this from the environment."""

    open_meteo_url: str = "https://api.open-meteo.com"
    open_meteo_geocoding_url: str = "https://geocoding-api.open-meteo.com"
    searxng_url: str | None = None
    http_allow_hosts: frozenset[str] = frozenset()  # "host" or "host:port", exempt from SSRF guard
    model: str = "gpt-5.4-mini"
    fetch_max_bytes: int = 2_000_000
    fetch_timeout: float = 10.0
    summarize_token_budget: int = 200_000  # prompt tokens one /summarize may spend
    max_output_tokens: int = 8_192  # cap on every model call's answer (reasoning tokens count too)
    output_tokens_param: str = "max_completion_tokens"  # "max_tokens" for servers that need it


@dataclass
class Usage:
    """Token and call counts of one run; LLM calls made inside tools add to it too."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    estimated_calls: int = 0  # calls whose server sent no usage: their tokens are our estimate

    def add(self, usage: Any) -> None:
        """Add an OpenAI `usage` object (or None when the server sent none)."""
        self.add_counts(getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)

    def add_counts(self, prompt: int, completion: int, *, estimated: bool = False) -> None:
        self.llm_calls += 1
        self.estimated_calls += estimated
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class RunTrace(Protocol):
    """Where orchestrators and tools report their steps; `bot` implements it with the database."""

    async def step(
        self,
        kind: str,
        name: str,
        *,
        arguments: str | None = None,
        output_chars: int = 0,
        error: str | None = None,
        duration_ms: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None: ...

    async def status(self, text: str) -> None: ...


@dataclass
class StepRecord:
    kind: str
    name: str
    arguments: str | None = None
    output_chars: int = 0
    error: str | None = None
    duration_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class MemoryTrace:
    """A RunTrace that keeps steps in a list: for console mode and tests."""

    steps: list[StepRecord] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    async def step(self, kind: str, name: str, **fields: Any) -> None:
        self.steps.append(StepRecord(kind=kind, name=name, **fields))

    async def status(self, text: str) -> None:
        self.statuses.append(text)


@dataclass
class ToolContext:
    """Everything one run's tools may use. Built per run by the bot (or console, or a test)."""

    http: aiohttp.ClientSession
    settings: ToolSettings = field(default_factory=ToolSettings)
    slack: AsyncWebClient | None = None
    llm: AsyncOpenAI | None = None
    team_id: str | None = None
    user_id: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    trace: RunTrace = field(default_factory=MemoryTrace)
    usage: Usage = field(default_factory=Usage)
