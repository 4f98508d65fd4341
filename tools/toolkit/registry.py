"""Typed async functions become tools: schema from the signature, validation, timeout, tracing."""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tools.guards.gate import EgressRule, parse_arguments
from tools.guards.gate import ToolError as ToolError  # re-exported: tools raise it from here
from tools.guards.gate import call as through_gate
from tools.toolkit.context import ToolContext
from tools.toolkit.json_schema import model_parameters

TRUNCATED = "…[output truncated: {cut} more characters]"
Mode = Literal["read", "write"]
ModeRule = Callable[[dict[str, Any]], Mode]
ARG_LINE = re.compile(r"^\s+(?P<name>\w+)(\s*\([^)]*\))?:\s*(?P<text>.*)$")

P = ParamSpec("P")
R = TypeVar("R")
ToolFn = Callable[Concatenate[ToolContext, P], Awaitable[R]]  # async def f(ctx, ...) -> data


@dataclass(frozen=True)
class ToolResult:
    """One run on the model's behalf; `content` always goes back to the model, ok or not."""

    name: str
    ok: bool
    content: str  # JSON text the model reads; for errors {"error": ...}
    error: str | None = None
    duration_ms: float = 0.0
    truncated: bool = False
    sources: tuple[str, ...] = ()  # where the content came from ("slack:C123", "web:host")


def describe(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {argument: text} from an `Args:` section): the model reads both."""
    summary = " ".join(doc.split("\n\n")[0].split())
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:"):
            in_args = True
        elif in_args and line.strip() and not line[0].isspace():
            in_args = False  # the next unindented section ends the arguments
        elif in_args and (match := ARG_LINE.match(line)):
            current = match["name"]
            args[current] = match["text"].strip()
        elif in_args and current and line.strip():
            args[current] += " " + line.strip()
    return summary, args


def readable(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        message = "unknown argument" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


class Tool(Generic[P, R]):
    """A tool: call it directly from code, or through a registry on the model's behalf.

    Generic over the wrapped function's parameters and result, so a type checker checks a direct
    call (`await get_weather(ctx, location="Karachi")`) against the function's own signature.
    """

    def __init__(
        self,
        fn: ToolFn[P, R],
        *,
        name: str | None,
        timeout: float,
        max_output_chars: int,
        status: str | None = None,
        mode: Mode | ModeRule = "read",
        egress: EgressRule | None = None,
    ) -> None:
        self._fn = fn
        self.egress = egress
        self.name = name or fn.__name__
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self.mode = mode
        self.status = status or f"Running {self.name}…"  # what the user sees while it runs
        self.description, arg_docs = describe(inspect.getdoc(fn) or self.name)
        hints = get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        params = list(inspect.signature(fn).parameters.values())[1:]  # skip ctx
        for p in params:
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
        self.model: type[BaseModel] = create_model(
            f"{self.name}_args", __config__=ConfigDict(extra="forbid"), **fields
        )
        parameters = model_parameters(self.model.model_json_schema())
        parameters.setdefault("properties", {})
        for arg, text in arg_docs.items():
            if arg in parameters["properties"]:
                parameters["properties"][arg].setdefault("description", text)
        parameters["additionalProperties"] = False
        parameters.setdefault("required", [])
        self.parameters = {k: v for k, v in parameters.items() if k != "description"}

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def mode_for(self, arguments: dict[str, Any]) -> Mode:
        """`read` runs freely; `write` changes something outside and needs the user's approval."""
        return self.mode(arguments) if callable(self.mode) else self.mode

    def validate(self, given: dict[str, Any]) -> dict[str, Any]:
        """The arguments checked against the schema, or ToolError saying what is wrong."""
        try:
            args = self.model.model_validate(given)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {readable(exc)}") from None
        return {k: getattr(args, k) for k in self.model.model_fields}

    async def execute(self, ctx: ToolContext, args: dict[str, Any]) -> Any:
        return await self._fn(ctx, **args)  # type: ignore[call-arg]  # validated

    async def __call__(self, ctx: ToolContext, *args: P.args, **kwargs: P.kwargs) -> R:
        """A call from code (a workflow): through the same gate as the model's; raises ToolError."""
        names = list(self.parameters.get("properties", {}))
        if len(args) > len(names):
            raise ToolError(f"{self.name} takes {len(names)} arguments, not {len(args)}")
        given = {**dict(zip(names, args, strict=False)), **kwargs}
        value, _, _ = await through_gate(self, ctx, given)
        return value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<tool {self.name}>"


@overload
def tool(fn: ToolFn[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    timeout: float = 10.0,
    max_output_chars: int = 8_000,
    status: str | None = None,
    mode: Mode | ModeRule = "read",
    egress: EgressRule | None = None,
) -> Callable[[ToolFn[P, R]], Tool[P, R]]: ...


def tool(
    fn: ToolFn[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float = 10.0,
    max_output_chars: int = 8_000,
    status: str | None = None,
    mode: Mode | ModeRule = "read",
    egress: EgressRule | None = None,
) -> Tool[P, R] | Callable[[ToolFn[P, R]], Tool[P, R]]:
    """Decorator: `@tool` or `@tool(timeout=5, status="Checking…")` over `async def f(ctx, ...)`.

    `status` is the line the user sees while the tool runs ("Running <name>…" when not given).
    `mode` is "read", "write" (needs the requesting user's approval), or a function of the validated
    arguments returning one of them. `egress` says where the arguments go (see tools/guards/gate.py):
    URLs or hosts, a function of (ctx, arguments) giving them, or `()` for nowhere; left out, the
    gate treats the tool as sending them somewhere unknown.
    """

    def wrap(f: ToolFn[P, R]) -> Tool[P, R]:
        return Tool(
            f,
            name=name,
            timeout=timeout,
            max_output_chars=max_output_chars,
            status=status,
            mode=mode,
            egress=egress,
        )

    return wrap(fn) if fn is not None else wrap


AnyTool = Tool[..., Any]


class ToolRegistry:
    """The tools one orchestrator may use; `run` never raises."""

    def __init__(self, tools: Iterable[AnyTool]) -> None:
        self.tools = {t.name: t for t in tools}
        self._schemas = [t.schema() for t in self.tools.values()]

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def get(self, name: str) -> AnyTool | None:
        return self.tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    def status(self, name: str) -> str:
        """The line shown while `name` runs; a name the model made up is not repeated to people."""
        found = self.tools.get(name)
        return found.status if found else "Running a tool…"

    def extended(self, *tools: AnyTool) -> ToolRegistry:
        return ToolRegistry([*self.tools.values(), *tools])

    async def run(self, name: str, arguments: str, ctx: ToolContext) -> ToolResult:
        """Run a call the model asked for, through the gate; every failure becomes a result it can read."""
        started = time.perf_counter()
        found = self.tools.get(name)

        def failed(message: str) -> ToolResult:
            return ToolResult(
                name, False, json.dumps({"error": message}), message, (time.perf_counter() - started) * 1000
            )

        try:
            if found is None:
                known = ", ".join(self.tools)
                raise ToolError(f"There is no tool called {name[:100]!r}. Available tools: {known}.")
            given = parse_arguments(name, arguments)
        except ToolError as exc:
            await ctx.trace.step("tool", name[:100], arguments=arguments[:4000], error=str(exc))
            return failed(str(exc))
        try:
            _, text, sources = await through_gate(found, ctx, given, arguments)
        except ToolError as exc:
            return failed(str(exc))
        truncated = len(text) > found.max_output_chars
        if truncated:
            cut = len(text) - found.max_output_chars
            text = text[: found.max_output_chars] + TRUNCATED.format(cut=cut)
        elapsed = (time.perf_counter() - started) * 1000
        return ToolResult(name, True, text, None, elapsed, truncated, sources)
