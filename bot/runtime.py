"""The process's shared parts (settings, database, Slack and model clients, tools), built once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from openai import DEFAULT_CONNECTION_LIMITS, AsyncAzureOpenAI, AsyncOpenAI, DefaultAsyncHttpxClient
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.db import Database
from bot.db.workspaces.installations import Installations
from bot.settings import Settings
from bot.slack.install import InstalledWebClient, WorkspaceTokens, bot_user
from bot.slack.output.calls import WriteSafeServerErrorRetryHandler
from bot.slack.output.safe_text import CleanWebClient, reply_session
from bot.work import WorkEngine
from bot.work.wake import waker_for
from orchestrators.agent.loop import Agent
from orchestrators.workflows import workflow_tools
from tools import ToolRegistry, default_tools
from tools.guards.audience import MembershipCache
from tools.llm.model_transport import AiohttpTransport
from tools.mcp_servers.mcp_tools import McpHub
from tools.parsing.extract import Extractor
from tools.toolkit.context import Approver, RunTrace, ToolContext, ToolLayer

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 30  # seconds per request on the shared session (slack_sdk's own default)
MODEL_KEEPALIVE = 60.0  # seconds an idle connection to the model server is kept


class TaskSet:
    """Background work started after an ack; kept so shutdown can wait for it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> int:
        """Wait for work in flight; cancel what is left after `timeout`. Returns how many."""
        if not self._tasks:
            return 0
        pending = set(self._tasks)
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
        return len(still)


def http_session() -> aiohttp.ClientSession:
    """The process's one HTTP session: the Slack Web API, response_url replies, file downloads
    and the tools share its connection pool, so calls reuse connections instead of paying a TCP
    (and, against Slack, a TLS) handshake each. slack_sdk only applies its own timeout to sessions
    it builds itself, so this one carries the timeout. No cookie jar: nothing a server sets for
    one workspace or person's call is sent along with another's."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT), cookie_jar=aiohttp.DummyCookieJar()
    )


def slack_client(
    settings: Settings, session: aiohttp.ClientSession, tokens: WorkspaceTokens | None = None
) -> AsyncWebClient:
    """A Web API client that waits out 429s and retries transient failures (never a write that a
    500 may have applied: bot/slack/output/calls.py decides those), and cleans every text it shows
    (bot/slack/output/safe_text.py). With `tokens` (OAuth mode) each call uses its workspace's token."""
    retry_handlers = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        WriteSafeServerErrorRetryHandler(max_retry_count=2),
    ]
    common: dict[str, Any] = {
        "base_url": settings.slack_api_url,
        "retry_handlers": retry_handlers,
        "session": session,
        "timeout": HTTP_TIMEOUT,
    }
    if tokens is not None:
        return InstalledWebClient(tokens, **common)
    return CleanWebClient(token=settings.slack_bot_token, **common)


def open_database(
    settings: Settings, pool_size: int | None = None, max_overflow: int | None = None
) -> Database:
    """The process's database (DB_POOL_SIZE + DB_MAX_OVERFLOW), or a smaller pool of its own
    for a loop of its own (the front door's)."""
    return Database(
        settings.database_url,
        pool_size=settings.db_pool_size if pool_size is None else pool_size,
        max_overflow=settings.db_max_overflow if max_overflow is None else max_overflow,
        pgbouncer=settings.db_pgbouncer,
        prices=settings.model_prices,
    )


def llm_client(settings: Settings) -> AsyncOpenAI | None:
    """The model client, one per process, its connections kept between questions (`model_http`).
    Azure's classic deployment URLs need AsyncAzureOpenAI (its own URL layout and `api-key`
    header); everything else, Azure's v1 endpoint included, is plain."""
    if not settings.llm_configured:
        return None
    if settings.azure_openai_endpoint:
        return AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_version=settings.openai_api_version,
            api_key=settings.model_api_key or "not-needed",
            max_retries=settings.llm_max_retries,
            timeout=settings.llm_timeout,
            http_client=model_http(settings.llm_timeout),
        )
    return AsyncOpenAI(
        api_key=settings.model_api_key or "not-needed",
        base_url=settings.openai_base_url,
        max_retries=settings.llm_max_retries,
        timeout=settings.llm_timeout,
        http_client=model_http(settings.llm_timeout),
    )


def model_http(timeout: float) -> DefaultAsyncHttpxClient:
    """The openai SDK's own HTTP client with its limits, its bytes carried by aiohttp
    (tools/llm/model_transport.py: half the CPU per streamed chunk), and idle connections kept a
    minute, not httpx's 5 seconds: questions a few seconds apart then skip a new TCP and TLS
    handshake. A connection the server closed meanwhile is noticed when it is taken and replaced."""
    limits = DEFAULT_CONNECTION_LIMITS
    kept = type(limits)(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=MODEL_KEEPALIVE,
    )
    return DefaultAsyncHttpxClient(
        timeout=timeout,
        limits=kept,  # what a proxied request (HTTPS_PROXY) still sent by httpx2 itself uses
        transport=AiohttpTransport(max_connections=kept.max_connections, keepalive=MODEL_KEEPALIVE),
    )


@dataclass
class Runtime:
    settings: Settings
    db: Database
    slack: AsyncWebClient
    llm: AsyncOpenAI | None
    http: aiohttp.ClientSession
    registry: ToolRegistry  # our own tools and workflows; MCP tools come and go (see `tools`)
    agent: Agent
    work: WorkEngine  # every durable job: turns, slash commands, digest fire times, approvals
    mcp: McpHub = field(default_factory=lambda: McpHub(()))
    tasks: TaskSet = field(default_factory=TaskSet)
    own_user_id: str | None = None  # the bot's user (single-workspace mode; see bot_user_id)
    digest_scheduler: Any = None  # bot.digests.scheduler.DigestScheduler; set by the server
    slack_available: bool = True  # False in console mode: tools that need Slack say so
    extractor: Extractor | None = None  # HTML/PDF parsing in killable worker processes
    memberships: MembershipCache = field(default_factory=MembershipCache)  # the audience checks' cache
    socket_down: str | None = None  # why Socket Mode stopped for good (link_disabled): /readyz says it
    tool_layer: ToolLayer | None = None  # `switchboard eval --record/--replay`: at every tool's execute step
    tokens: WorkspaceTokens | None = None  # OAuth mode: installed workspaces' tokens
    _identity: AsyncSlackResponse | None = field(default=None, init=False, repr=False)
    _identity_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def bot_user_id(self) -> str | None:
        """The bot's own user id in the workspace being served (each installation has its own)."""
        return bot_user.get() or self.own_user_id

    async def bot_identity(self) -> AsyncSlackResponse:
        """auth.test for the bot token, asked once per process (single-workspace mode): Bolt's own
        authorization asks lazily, so each request of a cold burst asked again. A failed call is
        not kept: the next request asks anew."""
        async with self._identity_lock:
            if self._identity is None:
                self._identity = await self.slack.auth_test()
            return self._identity

    async def slack_token(self) -> str:
        """The bot token of the workspace being served, for calls outside the Web API client
        (file downloads send it themselves)."""
        return self.settings.slack_bot_token if self.tokens is None else await self.tokens.current()

    async def tools(self, allows: Callable[[str], bool] | None = None) -> ToolRegistry:
        """The tools a run may use now: ours plus connected MCP servers', less the disabled ones.

        Every run takes its tools here, so this is where an early question waits (at most
        MCP_READY_SECONDS after start) for each MCP server's first connect instead of being
        answered without that server's tools.
        """
        await self.mcp.first_contact()
        every = [*self.registry.tools.values(), *self.mcp.tools()]
        return ToolRegistry(t for t in every if allows is None or allows(t.name))

    def tool_context(
        self,
        trace: RunTrace,
        *,
        team: str | None = None,
        user: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        model: str | None = None,
        ephemeral_to: str | None = None,
        approver: Approver | None = None,
    ) -> ToolContext:
        """`model`: a channel's model, used by the tools and workflow steps that call one too."""
        tools = self.settings.tools
        if model and model != tools.model:
            tools = dataclasses.replace(tools, model=model)
        return ToolContext(
            http=self.http,
            settings=tools,
            slack=self.slack if self.slack_available else None,
            llm=self.llm,
            team_id=team,
            user_id=user,
            channel_id=channel,
            thread_ts=thread_ts,
            trace=trace,
            extractor=self.extractor,
            bot_user_id=self.bot_user_id,
            ephemeral_to=ephemeral_to,
            memberships=self.memberships,
            approver=approver,
            layer=self.tool_layer,
        )

    async def close(self) -> None:
        await self.mcp.stop()
        if self.extractor is not None:
            await self.extractor.close()
        await self.http.close()
        if self.llm is not None:
            await self.llm.close()
        await self.work.close()
        await self.db.close()


async def create_runtime(settings: Settings, registry: ToolRegistry | None = None) -> Runtime:
    """Open the database (schema checked or migrated) and the clients; call inside the event loop."""
    db = open_database(settings)
    try:
        await db.prepare(settings.auto_migrate)
    except BaseException:
        await db.close()
        raise
    llm = llm_client(settings)
    registry = registry or default_tools().extended(*workflow_tools())
    mcp = McpHub(
        settings.mcp_server_configs,
        refresh=settings.mcp_check_seconds,
        ready_seconds=settings.mcp_ready_seconds,
    )
    mcp.start()  # connects in the background: a slow or dead server never delays the start
    tokens = None
    if settings.oauth:
        tokens = WorkspaceTokens(Installations(db, settings.slack_token_key or ""))
    http = http_session()
    reply_session.set(http)  # response_url replies of the work this task starts (safe_text.py)
    return Runtime(
        settings=settings,
        mcp=mcp,
        db=db,
        slack=slack_client(settings, http, tokens),
        tokens=tokens,
        llm=llm,
        http=http,
        registry=registry,
        agent=Agent(llm, settings.openai_model, registry, settings.agent_limits()),
        work=WorkEngine(
            db,
            lease_seconds=settings.work_lease_seconds,
            concurrency=settings.work_concurrency,
            person_slots=settings.user_max_concurrent_runs,
            poll_seconds=settings.work_poll_seconds,
            waker=waker_for(settings),
        ),
        extractor=Extractor(
            workers=settings.extract_workers,
            deadline=settings.extract_deadline_seconds,
            max_bytes=max(settings.file_max_bytes, settings.tools.fetch_max_bytes),
        ),
    )
