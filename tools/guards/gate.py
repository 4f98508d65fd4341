"""The one gate every tool call passes, whoever makes it: the model (through the registry), a
workflow calling a tool directly, or an approved call being resumed. One order, no opt-out:

1. audience: where the result will appear is fixed by the run (its channel, or one person);
   anything the call read from Slack must be showable there, or the result is withheld. A tool
   learns what it read while it runs, so this is decided on what it noted, before the result
   leaves the gate.
2. egress: every tool declares where its arguments go (`egress=`: URLs, an MCP server, or `()`
   for nowhere); one that declares nothing counts as sending them somewhere unknown. Once the
   run (or its conversation) carries non-public content, each destination must be trusted by the
   operator or approved by the requester. A fetch's redirect hops come back here one by one.
3. approval: a call in `write` mode runs only with the requester's approval of that exact call.
4. budget: no call starts once the run has spent its token budget.
5. execute: validated, time-limited, traced.
6. provenance: the result carries its own sources and the run's non-public ones (what was read
   before may have flowed into the arguments), and so does every message stored from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from slack_sdk.errors import SlackApiError

from tools.guards.audience import may_show
from tools.toolkit.context import ToolContext
from tools.toolkit.errors import UserFacingError

if TYPE_CHECKING:
    from tools.toolkit.registry import Tool

MAX_ARGUMENT_DEPTH = 64  # no tool takes arguments nested deeper; deeper ones only exhaust the stack
EgressRule = Callable[[ToolContext, dict[str, Any]], Iterable[str]] | Sequence[str]

NO_APPROVALS = (
    "{name} changes things outside Switchboard, so it needs the requesting user's approval, and "
    "approvals are not available here. It was not run; tell the user what you would have done."
)
BUDGET_SPENT = (
    "Not run: this run has used its token budget ({used:,} of {budget:,} tokens). Answer with what you have."
)


def to_jsonable(value: Any) -> Any:
    """Tools return data (models, dataclasses, dicts, lists); the model needs JSON."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


class ToolError(UserFacingError):
    """A failure worded for whoever called the tool: the model, or a workflow's user."""


def depth_of(value: Any) -> int:
    """How deeply lists and objects nest in `value`, counted without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list | tuple):
            deepest = max(deepest, depth)
            if depth > MAX_ARGUMENT_DEPTH:
                return depth
            todo += [(v, depth + 1) for v in node]
    return deepest


def parse_arguments(name: str, arguments: str) -> dict[str, Any]:
    """The model's JSON arguments as an object, or ToolError saying what is wrong with them."""
    try:
        given = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"The arguments for {name} are not valid JSON ({exc.msg}); send a JSON object."
        ) from None
    except RecursionError:
        given = None
    if given is None or depth_of(given) > MAX_ARGUMENT_DEPTH:
        raise ToolError(
            f"The arguments for {name} are nested more than {MAX_ARGUMENT_DEPTH} levels deep; "
            "no tool takes that. Send a flat JSON object."
        )
    if not isinstance(given, dict):
        raise ToolError(f"The arguments for {name} must be a JSON object, not {type(given).__name__}.")
    return given


# -- egress ------------------------------------------------------------------------------------


def destinations(tool: Tool[..., Any], ctx: ToolContext, args: dict[str, Any]) -> list[str]:
    """Where this call sends its arguments; `tool:<name>` when the tool did not say."""
    rule = tool.egress
    if rule is None:
        return [f"tool:{tool.name}"]
    return list(rule(ctx, args) if callable(rule) else rule)


def trusted(host: str, port: int | None, hosts: frozenset[str]) -> bool:
    return host in hosts or (port is not None and f"{host}:{port}" in hosts)


def _host_of(destination: str) -> tuple[str, int | None]:
    """`mcp:<server>` and `tool:<name>` stand for themselves; a URL for its host (and port)."""
    if destination.startswith(("mcp:", "tool:")):
        return destination.lower(), None
    parts = urlsplit(destination)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


def _label(host: str) -> str:
    if host.startswith("mcp:"):
        return f"the {host.removeprefix('mcp:')} MCP server"
    if host.startswith("tool:"):
        return f"wherever {host.removeprefix('tool:')} sends it"
    return host


async def check_egress(ctx: ToolContext, tool: str, destination: str) -> None:
    """Return if `destination` may receive data now; raise ToolError (nothing sent) if not.

    Only a run that carries non-public content is asked about; its requester approves a host
    once per run. `EGRESS_TRUSTED_HOSTS` (hosts, or MCP servers marked `trusted`) never ask.
    """
    if not ctx.flow.private_sources:
        return
    host, port = _host_of(destination)
    if trusted(host, port, ctx.settings.egress_trusted_hosts) or host in ctx.flow.approved_hosts:
        return
    read = ", ".join(s.split(":", 1)[-1] for s in ctx.flow.private_sources)
    where = _label(host)
    if ctx.approver is None:
        raise ToolError(
            f"Not sent: this run has read non-public content ({read}) and {where} is not a trusted "
            "destination; nobody is here to approve it. Answer without it."
        )
    decision = await ctx.approver.approve(
        ctx, tool=tool, host=where, url=destination, sources=ctx.flow.private_sources
    )
    if decision.approved:
        ctx.flow.approved_hosts.add(host)
        return
    why = {"denied": "the user denied it", "expired": "the user did not approve it in time"}.get(
        decision.state, "it could not be approved"
    )
    raise ToolError(
        f"Not sent: this run has read non-public content ({read}), so sending data to {where} "
        f"needed the user's approval, and {why}. Do not retry; answer with what you have."
    )


# -- the gate ----------------------------------------------------------------------------------


async def _approval(tool: Tool[..., Any], ctx: ToolContext, args: dict[str, Any]) -> None:
    if tool.mode_for(args) != "write":
        return
    refused = NO_APPROVALS.format(name=tool.name) if ctx.approvals is None else None
    if ctx.approvals is not None:
        refused = await ctx.approvals(tool.name, args)
    if refused:
        raise ToolError(refused)


def _budget(ctx: ToolContext) -> None:
    """The run's own budget, and what its daily-cap reservation lets it spend (`usage.limit`)."""
    limits = [b for b in (ctx.token_budget, ctx.usage.limit) if b is not None]
    if limits and ctx.usage.total_tokens >= min(limits):
        raise ToolError(BUDGET_SPENT.format(used=ctx.usage.total_tokens, budget=min(limits)))


async def _execute(tool: Tool[..., Any], ctx: ToolContext, args: dict[str, Any]) -> Any:
    limit = asyncio.timeout(tool.timeout)
    try:
        async with limit:
            if ctx.layer is not None:  # evals: the same rules, a recorded result
                return await ctx.layer.execute(tool, ctx, args)
            return await tool.execute(ctx, args)
    except TimeoutError as exc:
        if not limit.expired():  # a timeout of the tool's own (e.g. an HTTP client's)
            raise ToolError(f"{tool.name} failed: it timed out ({exc or 'no answer'})") from exc
        raise ToolError(f"{tool.name} timed out after {tool.timeout:g} s") from None
    except ToolError:
        raise
    except RecursionError:
        raise ToolError(f"{tool.name} failed: its input is nested too deeply") from None
    except Exception as exc:  # the tool call boundary
        raise ToolError(f"{tool.name} failed: {exc or type(exc).__name__}") from exc


async def _audience(ctx: ToolContext, sources: list[str]) -> None:
    """What the call read from Slack may appear where this run's results appear."""
    if ctx.slack is None:
        return  # no Slack (the console): nobody else sees the result
    for source in sources:
        if not source.startswith("slack:"):
            continue
        try:
            verdict = await may_show(
                ctx.slack,
                ctx.memberships,
                team=ctx.team_id,
                source=source.removeprefix("slack:"),
                place=ctx.channel_id,
                ephemeral_to=ctx.ephemeral_to,
                bot_user=ctx.bot_user_id,
            )
        except SlackApiError:
            raise ToolError("Not shown here: I can't tell who can read what this read.") from None
        if not verdict.allowed:
            raise ToolError(f"Not shown here: {verdict.reason}.")


def provenance(ctx: ToolContext, own: Sequence[str]) -> tuple[str, ...]:
    """A result's sources: what it read, and every non-public source the run had read by then."""
    return tuple(dict.fromkeys([*own, *ctx.flow.private_sources]))


async def call(
    tool: Tool[..., Any], ctx: ToolContext, given: dict[str, Any], arguments: str | None = None
) -> tuple[Any, str, tuple[str, ...]]:
    """Run one call through every rule: (value, its JSON text, its sources), or ToolError."""
    started = time.perf_counter()
    error: str | None = None
    output_chars = 0
    if arguments is None:
        arguments = json.dumps(to_jsonable(given), default=str)
    call_ctx = ctx.for_call()
    try:
        if depth_of(given) > MAX_ARGUMENT_DEPTH:
            raise ToolError(f"The arguments for {tool.name} are nested too deeply.")
        try:
            args = tool.validate(given)
        except RecursionError:
            raise ToolError(f"The arguments for {tool.name} are nested too deeply.") from None
        for destination in destinations(tool, ctx, args):
            await check_egress(ctx, tool.name, destination)
        await _approval(tool, ctx, args)
        _budget(ctx)
        value = await _execute(tool, call_ctx, args)
        await _audience(ctx, call_ctx.sources)
        text = json.dumps(to_jsonable(value), ensure_ascii=False, default=str)
        output_chars = len(text)
        for source in call_ctx.sources:  # a workflow's inner calls count as its own reads
            if source not in ctx.sources:
                ctx.sources.append(source)
        return value, text, provenance(ctx, call_ctx.sources)
    except ToolError as exc:
        error = str(exc)
        raise
    finally:
        await ctx.trace.step(
            "tool",
            tool.name,
            arguments=arguments[:4000],
            output_chars=output_chars,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
