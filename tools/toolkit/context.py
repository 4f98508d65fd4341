"""What a tool may touch, passed in explicitly: tools hold no globals and import nothing above."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tools.guards.audience import MembershipCache

if TYPE_CHECKING:
    import aiohttp
    from openai import AsyncOpenAI
    from slack_sdk.web.async_client import AsyncWebClient

    from tools.parsing.extract import Extractor


@dataclass(frozen=True)
class ToolSettings:
    """Operator settings the tools need; `bot.settings` builds this from the environment."""

    open_meteo_url: str = "https://api.open-meteo.com"
    open_meteo_geocoding_url: str = "https://geocoding-api.open-meteo.com"
    searxng_url: str | None = None
    http_allow_hosts: frozenset[str] = frozenset()  # "host" or "host:port", exempt from SSRF guard
    egress_trusted_hosts: frozenset[str] = frozenset()  # may receive requests after private reads
    approval_seconds: float = 60.0  # how long the requester has to approve an outbound request
    model: str = "gpt-5.4-mini"
    fetch_max_bytes: int = 2_000_000
    fetch_timeout: float = 10.0
    summarize_token_budget: int = 200_000  # prompt tokens one /summarize may spend
    extract_deadline: float = 10.0  # seconds one HTML/PDF parse may take before its process dies
    max_output_tokens: int = 8_192  # cap on every model call's answer (reasoning tokens count too)
    output_tokens_param: str = "max_completion_tokens"  # "max_tokens" for servers that need it


@dataclass
class Usage:
    """Token and call counts of one run; LLM calls made inside tools add to it too."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    estimated_calls: int = 0  # calls whose server sent no usage: their tokens are our estimate
    limit: int | None = None  # what a daily cap lets the run spend: no model call starts past it

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


class Approvals(Protocol):
    """Asks the requesting user to approve one write call; None = approved, else why not."""

    async def __call__(self, tool: str, arguments: dict[str, Any]) -> str | None: ...


@dataclass
class DataFlow:
    """What one run has read that not everyone may read: the egress guard decides on it."""

    private_sources: list[str] = field(default_factory=list)  # e.g. "slack:C0LEAD"
    approved_hosts: set[str] = field(default_factory=set)  # hosts the requester let through


@dataclass(frozen=True)
class ApprovalDecision:
    """How a request for the user's approval ended: approved, denied, expired or unavailable."""

    state: str
    by: str | None = None

    @property
    def approved(self) -> bool:
        return self.state == "approved"


class Approver(Protocol):
    """Asks the requesting user to approve an outbound request; `bot` implements it with Slack."""

    async def approve(
        self, ctx: ToolContext, *, tool: str, host: str, url: str, sources: list[str]
    ) -> ApprovalDecision: ...


class ToolLayer(Protocol):
    """Stands in for a tool's own execution at the gate, after every rule has passed: evals
    record results there, or serve recorded ones (orchestrators/evals/tape.py)."""

    async def execute(self, tool: Any, ctx: ToolContext, args: dict[str, Any]) -> Any: ...


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
    approvals: Approvals | None = None  # None: write tools are refused
    extractor: Extractor | None = None  # the process's parser pool; None spawns a one-off worker
    bot_user_id: str | None = None
    ephemeral_to: str | None = None  # set when results are shown only to this user
    memberships: MembershipCache = field(default_factory=MembershipCache)  # shared by the process
    flow: DataFlow = field(default_factory=DataFlow)  # shared by the run's tool calls
    approver: Approver | None = None
    sources: list[str] = field(default_factory=list)  # what the current tool call read
    token_budget: int | None = None  # tokens the run may spend; the gate starts no call past it
    layer: ToolLayer | None = None  # evals only: records or replays results at the execute step
    deadline: float | None = None  # time.monotonic() when the run's time is up: parsing stops there

    @property
    def requester(self) -> str:
        """Who asks, for sharing the parser workers fairly: the person, else this run. Slack user
        ids are unique across workspaces, and a shared file names only its uploader's id."""
        return f"user:{self.user_id}" if self.user_id else f"run:{id(self.trace)}"

    def note_source(self, source: str, *, public: bool) -> None:
        """A tool read `source` ("slack:C123", "web:host"): its result carries it from now on."""
        if source not in self.sources:
            self.sources.append(source)
        if not public and source not in self.flow.private_sources:
            self.flow.private_sources.append(source)

    def for_call(self) -> ToolContext:
        """The same run, with a fresh list of sources for one tool call."""
        return dataclasses.replace(self, sources=[])
