"""A fake OpenAI-compatible Chat Completions server: scripted replies, every request checked.

Each body is validated against the published request schema and the conversation's tool-call
shape, so a test fails when the bot sends something the real API would reject.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from tests.fakes import model_quirks
from tests.fakes.model_quirks import Quirks
from tests.fakes.server import FakeServer

SCHEMA = Path(__file__).parent / "specs" / "openai-chat-completions-request.schema.json"
CONTENT_PIECE = 20  # characters per streamed content delta
ARGUMENTS_PIECE = 15  # characters per streamed tool-call arguments delta


@cache
def validator() -> Draft202012Validator:
    """Built once per process: compiling the 60 kB schema for every request would be slow."""
    return Draft202012Validator(json.loads(SCHEMA.read_text()))


@dataclass
class ToolCall:
    """A tool call the fake model makes; str arguments are sent verbatim (even invalid JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # auto: call_1, call_2, ...


@dataclass
class Reply:
    """One scripted model turn: text, tool calls, or an HTTP error."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering
    status: int = 200
    error_message: str = "fake error"
    usage: tuple[int, int] | None = None  # (prompt, completion); default: ~len(text) / 4
    stream_delay: float = 0.0  # pause after each streamed content delta
    finish_reason: str | None = None  # default: "tool_calls" or "stop"
    refusal: str | None = None  # OpenAI's refusal: set instead of content
    sse: bytes | None = None  # a streamed body sent as it is (a real server's recorded shape)
    sse_piece: int = 0  # write `sse` in pieces of this many bytes (lines cut across reads)
    sse_hold: bool = False  # keep the body open after `sse` until the client goes away
    sse_abort: bool = False  # drop the connection after `sse`, the body unfinished


Responder = Callable[[dict[str, Any]], "Reply | str | Awaitable[Reply | str]"]


def shape_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Problems with tool-call pairing that the real API rejects with a 400.

    An assistant message with tool_calls must be followed at once by one `tool` message per call
    id; a `tool` message must answer a call of the directly preceding assistant group; no call
    is answered twice.
    """
    problems: list[str] = []
    pending: list[str] = []  # ids of the open group still waiting for their result
    group_open = False  # True while reading the tool messages right after an assistant group
    answered: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "tool":
            cid = m.get("tool_call_id")
            if cid in answered:
                problems.append(f"message {i}: tool call {cid!r} answered twice")
            elif not group_open or cid not in pending:
                problems.append(
                    f"message {i}: tool result {cid!r} answers no call of the preceding assistant message"
                )
            else:
                pending.remove(cid)
                answered.add(cid)
            continue
        if pending:
            problems.append(f"message {i}: {role} message before tool calls {pending} were answered")
        pending, group_open = [], False
        if role == "assistant" and m.get("tool_calls"):
            ids = [c.get("id") for c in m["tool_calls"]]
            if len(set(ids)) != len(ids):
                problems.append(f"message {i}: duplicate tool call ids {ids}")
            pending, group_open = list(dict.fromkeys(ids)), True
    if pending:
        problems.append(f"request ends with unanswered tool calls {pending}")
    return problems


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI(FakeServer):
    """POST /v1/chat/completions. `script()` queues replies; else `responder`; else `default`.

    `quirks` makes it behave like a given real server (see tests/fakes/model_quirks.py). Azure's
    classic layout is served too: /openai/deployments/{deployment}/chat/completions?api-version=
    with the key in an `api-key` header.
    """

    def __init__(self, quirks: Quirks | None = None) -> None:
        super().__init__()
        self.quirks = quirks or Quirks()
        self.azure_calls: list[tuple[str, str]] = []  # (deployment, api-version) of Azure requests
        self.requests: list[dict[str, Any]] = []
        self.schema_errors: list[str] = []
        self.shape_errors: list[str] = []
        self.queue: list[Reply] = []
        self.default = Reply(content="OK from the fake model")
        self.responder: Responder | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._call_ids = itertools.count(1)
        self._completion_ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def script(self, *replies: Reply) -> None:
        """Queue replies, consumed one per request in order, before `responder` or `default`."""
        self.queue.extend(replies)

    def reset(self) -> None:
        """Forget requests and scripting; schema and shape errors are kept (they are the guard)."""
        self.requests.clear()
        self.queue.clear()
        self.responder = None
        self.default = Reply(content="OK from the fake model")
        self.max_in_flight = self.in_flight

    def tool_names_sent(self, i: int) -> list[str]:
        """Names of the tools offered in request `i` ([] when it offered none)."""
        return [t["function"]["name"] for t in self.requests[i].get("tools") or [] if "function" in t]

    async def wait_for_requests(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.01)
        return self.requests

    # --- HTTP ---------------------------------------------------------------------------------
    async def _azure(self, request: web.Request) -> web.StreamResponse:
        version = request.query.get("api-version", "")
        if not version:
            return _error(404, "Resource not found", "invalid_request_error", "404")
        if not request.headers.get("api-key", "").strip():
            return _error(401, "Access denied due to missing subscription key.", "invalid_request_error")
        self.azure_calls.append((request.match_info["deployment"], version))
        return await self._complete(request, authorized=True)

    async def _complete(self, request: web.Request, authorized: bool = False) -> web.StreamResponse:
        if not authorized and not request.headers.get("Authorization", "").removeprefix("Bearer ").strip():
            return _error(401, "You didn't provide an API key.", "invalid_request_error", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError as exc:
            self.schema_errors.append(f"body is not JSON: {exc}")
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        self.requests.append(body)
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in _errors(body)]
        if errors:
            self.schema_errors += errors
            return _error(400, "; ".join(errors)[:2000], "invalid_request_error")
        self.shape_errors += shape_problems(body.get("messages", []))
        if problem := model_quirks.request_problem(self.quirks, body):
            status, message, code = problem
            return _error(status, message, _error_type(status), code)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = await self._reply_for(body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200:
                return _error(reply.status, reply.error_message, _error_type(reply.status))
            if reply.sse is not None:
                return await self._verbatim(request, reply)
            if reply.tool_calls and model_quirks.tools_dropped(self.quirks, body):
                reply = Reply(content=model_quirks.TOOLS_IGNORED)
            calls = [
                model_quirks.decorate_call(self.quirks, self._call(c), first=i == 0)
                for i, c in enumerate(reply.tool_calls)
            ]
            if not calls and reply.status == 200:
                content, refusal, finish = model_quirks.final_answer(self.quirks, reply.content)
                reply = Reply(
                    content=content,
                    refusal=reply.refusal or refusal,
                    usage=reply.usage,
                    stream_delay=reply.stream_delay,
                    finish_reason=reply.finish_reason or finish,
                )
            prompt = _estimate(json.dumps(body.get("messages", [])))
            completion = _estimate((reply.content or "") + json.dumps(calls))
            usage = _usage(reply.usage or (prompt, completion))
            finish = reply.finish_reason or ("tool_calls" if calls else "stop")
            head = {
                "id": f"chatcmpl-{next(self._completion_ids)}",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
            }
            if body.get("stream"):
                return await self._stream(request, body, head, reply, calls, finish, usage)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": reply.content,
                "refusal": reply.refusal,
            }
            if calls:
                message["tool_calls"] = calls
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return web.json_response(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        finally:
            self.in_flight -= 1

    async def _reply_for(self, body: dict[str, Any]) -> Reply:
        if self.queue:
            return self.queue.pop(0)
        if self.responder is None:
            return self.default
        reply = self.responder(body)
        if inspect.isawaitable(reply):
            reply = await reply
        return Reply(content=reply) if isinstance(reply, str) else reply

    def _call(self, call: ToolCall) -> dict[str, Any]:
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        return {
            "id": call.id or f"call_{next(self._call_ids)}",
            "type": "function",
            "function": {"name": call.name, "arguments": args},
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        head: dict[str, Any],
        reply: Reply,
        calls: list[dict[str, Any]],
        finish: str,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        """Server-sent events the way OpenAI sends them: role, content pieces, tool-call deltas."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        base = {**head, "object": "chat.completion.chunk"}

        async def send(data: dict[str, Any] | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            await response.write(f"data: {text}\n\n".encode())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        try:
            await send(chunk({"role": "assistant", "content": ""}))
            text = reply.content or ""
            for i in range(0, len(text), CONTENT_PIECE):
                await send(chunk({"content": text[i : i + CONTENT_PIECE]}))
                if reply.stream_delay:
                    await asyncio.sleep(reply.stream_delay)
            refusal = reply.refusal or ""
            for i in range(0, len(refusal), CONTENT_PIECE):
                await send(chunk({"refusal": refusal[i : i + CONTENT_PIECE]}))
            for index, call in enumerate(calls):
                fn = call["function"]
                where = model_quirks.stream_index(self.quirks, index)
                extra = {k: v for k, v in call.items() if k not in ("id", "type", "function")}
                start = {**where, "id": call["id"], "type": "function", **extra}
                await send(
                    chunk({"tool_calls": [{**start, "function": {"name": fn["name"], "arguments": ""}}]})
                )
                args = fn["arguments"]
                for i in range(0, len(args), ARGUMENTS_PIECE):
                    piece = {**where, "function": {"arguments": args[i : i + ARGUMENTS_PIECE]}}
                    await send(chunk({"tool_calls": [piece]}))
            await send(chunk({}, finish))
            wants_usage = (body.get("stream_options") or {}).get("include_usage")
            if wants_usage and self.quirks.stream_usage:
                await send({**base, "choices": [], "usage": usage})
            await send("[DONE]")
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream (a cancelled run): nothing to do
            pass
        return response

    async def _verbatim(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        """`reply.sse` byte for byte, in pieces when asked; then the body's end, or it is held
        open (`sse_hold`) or broken off (`sse_abort`)."""
        assert reply.sse is not None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        step = reply.sse_piece or len(reply.sse) or 1
        try:
            for i in range(0, len(reply.sse), step):
                await response.write(reply.sse[i : i + step])
            while reply.sse_hold and request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)  # the body stays open until the client closes it
            if reply.sse_abort and request.transport is not None:
                request.transport.abort()  # no last chunk: the client sees a broken body
                return response
            await response.write_eof()
        except ConnectionError:
            pass
        return response


def _errors(body: Any) -> list[Any]:
    return sorted(validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    if status in (401, 403):
        return "authentication_error"
    return "invalid_request_error" if status < 500 else "server_error"


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    error = {"message": message, "type": kind, "param": None, "code": code or kind}
    return web.json_response({"error": error}, status=status)
