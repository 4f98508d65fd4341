"""MCP tool servers as tools: one supervised connection per server, tools namespaced `server__tool`.

Built on the official `mcp` SDK's `Client`. A server that is down has no tools; its supervisor
keeps reconnecting (with backoff), so the bot never depends on it being up.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import AsyncExitStack
from typing import Any, Literal

from jsonschema import Draft202012Validator

from tools.mcp_servers.mcp_config import McpServerConfig
from tools.toolkit.context import ToolContext
from tools.toolkit.json_schema import model_parameters
from tools.toolkit.registry import Tool, ToolError

log = logging.getLogger(__name__)
LinkState = Literal["connecting", "connected", "down"]

SEPARATOR = "__"
MODEL_MAX_LENGTH = 1_000  # llama.cpp grammar compilers fail on larger maxLength; we still validate it


def model_schema(input_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the model is shown: object at the root, $refs inlined, no title annotations."""
    schema = model_parameters(input_schema)
    if schema.get("type") != "object":
        raise ValueError("its input schema is not an object")
    schema.setdefault("properties", {})
    stack: list[Any] = [schema]
    while stack:  # no recursion: a schema may be nested deeper than Python's stack
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("maxLength"), int) and node["maxLength"] >= MODEL_MAX_LENGTH:
                del node["maxLength"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def result_text(result: Any, limit: int) -> str:
    """The text of a CallToolResult's content blocks, capped (non-text blocks are named)."""
    parts: list[str] = []
    for block in result.content or []:
        kind = getattr(block, "type", "?")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource_link":
            parts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind} content omitted]")
    text = "\n".join(parts)
    return text[: limit + 1]


class McpTool(Tool[..., Any]):
    """A tool listed by an MCP server: its schema checked here, its call sent to the server."""

    def __init__(self, link: McpLink, remote: Any) -> None:
        config = link.config
        self.link = link
        self.remote_name: str = remote.name
        self.name = f"{config.name}{SEPARATOR}{remote.name}"[:64]
        self.timeout = config.timeout
        self.max_output_chars = config.max_output_chars
        self.mode = config.mode
        # Arguments go to the server: after a private read that needs approval, unless trusted.
        self.egress = () if config.trusted else (f"mcp:{config.name}",)
        self.status = f"Asking the {config.name} server…"
        summary = " ".join((remote.description or remote.name).split())
        self.description = f"{summary} (from the {config.name} MCP server)"[:1_000]
        Draft202012Validator.check_schema(remote.input_schema)
        self.validator = Draft202012Validator(remote.input_schema)
        self.parameters = model_schema(remote.input_schema)

    def validate(self, given: dict[str, Any]) -> dict[str, Any]:
        errors = sorted(self.validator.iter_errors(given), key=lambda e: list(map(str, e.path)))
        if errors:
            text = "; ".join(f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in errors[:5])
            raise ToolError(f"invalid arguments for {self.name}: {text}")
        return given

    async def execute(self, ctx: ToolContext, args: dict[str, Any]) -> Any:
        result = await self.link.call(self.remote_name, args)
        ctx.note_source(f"mcp:{self.link.config.name}", public=True)
        text = result_text(result, self.max_output_chars)
        if result.is_error:
            raise ToolError(f"{self.name} failed: {text[:1_000] or 'the server reported an error'}")
        out: dict[str, Any] = {"source": f"MCP server {self.link.config.name}, tool {self.remote_name}"}
        if result.structured_content is not None:
            out["data"] = result.structured_content
        else:
            out["text"] = text
        return out


class McpLink:
    """One MCP server: a task holds the connection open, reconnecting whenever it drops."""

    def __init__(self, config: McpServerConfig, *, refresh: float = 30.0, max_backoff: float = 60.0) -> None:
        self.config = config
        self.refresh = refresh  # how often an idle connection is checked (and the tool list re-read)
        self.max_backoff = max_backoff
        self.tools: list[McpTool] = []
        self.connected = asyncio.Event()
        self.state: LinkState = "connecting"
        self.reason: str | None = None  # why it is down, for /readyz and the log
        self.first_attempt = asyncio.Event()  # the first connect has ended, either way
        self._client: Any = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"mcp {self.config.name}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            if self._client is None:  # not connected (e.g. a first connect that never ends): nothing to drain
                self._task.cancel()
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:  # closing: nothing left to do
                log.debug("MCP server %s: error while closing", self.config.name, exc_info=True)

    def _transport(self, stack: AsyncExitStack) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        c = self.config
        if c.url is not None:
            http = create_mcp_http_client(headers=dict(c.headers))
            stack.push_async_callback(http.aclose)
            return streamable_http_client(c.url, http_client=http)
        # The SDK passes only a safe base environment (PATH, HOME, ...) plus `env`: the bot's own
        # secrets never reach a server unless the file names them.
        params = StdioServerParameters(
            command=c.command[0], args=list(c.command[1:]), env=dict(c.env), cwd=c.cwd
        )
        return stdio_client(params, errlog=sys.stderr)  # the server's own log lines, as operators expect

    async def _supervise(self) -> None:
        from mcp import Client

        backoff = 1.0
        while not self._stopping:
            try:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(
                        Client(self._transport(stack), read_timeout_seconds=self.config.timeout)
                    )
                    await self._list(client)
                    self._client = client
                    self.state, self.reason = "connected", None
                    self.connected.set()
                    self.first_attempt.set()
                    log.info(
                        "MCP server %s connected: tools %s", self.config.name, [t.name for t in self.tools]
                    )
                    backoff = 1.0
                    while not self._stopping:
                        self._wake.clear()
                        try:
                            await asyncio.wait_for(self._wake.wait(), self.refresh)
                            break  # stopping, or a call found the connection closed
                        except TimeoutError:
                            await self._list(client)  # raises when the server has gone
            except Exception as exc:  # the server's task boundary
                self.state, self.reason = "down", _reason(exc)
                if not self._stopping:
                    log.warning(
                        "MCP server %s (%s) unavailable, its tools are off until it is back: %s",
                        self.config.name,
                        self.config.where,
                        _reason(exc),
                    )
            finally:
                self._client, self.tools = None, []
                self.connected.clear()
                if self.state != "down":
                    self.state, self.reason = "down", "the connection closed"
                self.first_attempt.set()
            if self._stopping:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), backoff)
            except TimeoutError:
                pass
            self._wake.clear()
            backoff = min(backoff * 2, self.max_backoff)

    async def _list(self, client: Any) -> None:
        listing = await client.list_tools(cache_mode="refresh")
        tools = []
        for remote in listing.tools:
            if self.config.tools is not None and remote.name not in self.config.tools:
                continue
            try:
                tools.append(McpTool(self, remote))
            except Exception as exc:  # one unusable schema must not take the server's other tools
                log.warning("MCP server %s: tool %s skipped: %s", self.config.name, remote.name, _reason(exc))
        self.tools = tools

    def status(self) -> dict[str, Any]:
        """For /readyz: `connecting` (first attempt under way), `connected`, or `down` and why."""
        out: dict[str, Any] = {"state": self.state, "tools": len(self.tools)}
        if self.state == "down":
            out["reason"] = self.reason
        return out

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = self._client
        if client is None:
            raise ToolError(f"the {self.config.name} MCP server is unavailable right now")
        try:
            return await client.call_tool(name, arguments, read_timeout_seconds=self.config.timeout)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolError(f"{self.config.name}{SEPARATOR}{name} timed out") from None
            if exc.code == CONNECTION_CLOSED:
                self._wake.set()  # reconnect now, not at the next check
                raise ToolError(f"the {self.config.name} MCP server went away") from None
            raise ToolError(f"{self.config.name}{SEPARATOR}{name} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            self._wake.set()
            raise ToolError(f"the {self.config.name} MCP server went away ({exc})") from None


class McpHub:
    """Every configured MCP server; `tools()` lists the tools of those connected right now."""

    def __init__(
        self, configs: tuple[McpServerConfig, ...], *, refresh: float = 30.0, ready_seconds: float = 20.0
    ) -> None:
        self.links = [McpLink(c, refresh=refresh) for c in configs]
        self.ready_seconds = ready_seconds  # how long readiness waits for the first connects
        self._deadline: float | None = None  # loop time when that wait ends; None: not started

    def start(self) -> None:
        self._deadline = asyncio.get_running_loop().time() + self.ready_seconds
        for link in self.links:
            link.start()

    async def stop(self) -> None:
        await asyncio.gather(*(link.stop() for link in self.links))

    def tools(self) -> list[Tool[..., Any]]:
        return [t for link in self.links for t in link.tools]

    def status(self) -> dict[str, dict[str, Any]]:
        return {link.config.name: link.status() for link in self.links}

    def waiting(self) -> list[str]:
        """Servers whose first connect is still under way, while the readiness window is open."""
        if self._deadline is None or asyncio.get_running_loop().time() >= self._deadline:
            return []
        return [link.config.name for link in self.links if not link.first_attempt.is_set()]

    async def first_contact(self) -> None:
        """Wait until every server's first connect has ended (connected or failed), at most until
        MCP_READY_SECONDS after start: a question asked early still gets the servers' tools."""
        pending = [link for link in self.links if not link.first_attempt.is_set()]
        if not pending or self._deadline is None:
            return
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        try:
            async with asyncio.timeout(remaining):
                await asyncio.gather(*(link.first_attempt.wait() for link in pending))
        except TimeoutError:
            slow = [link.config.name for link in pending if not link.first_attempt.is_set()]
            log.warning("MCP servers %s: no first connect within %g s", slow, self.ready_seconds)

    async def ready(self, timeout: float) -> bool:
        """Wait until every server is connected (start-up, tests); False when one is not."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(link.connected.wait() for link in self.links))
            return True
        except TimeoutError:
            return False


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception group (anyio task groups wrap transport failures)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]
