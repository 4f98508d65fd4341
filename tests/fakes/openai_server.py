"""A fake OpenAI-compatible Chat Completions server: scripted replies, every request validated."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from tests.fakes.server import FakeServer

SCHEMA = Path(__file__).parent / "specs" / "openai-chat-completions-request.schema.json"


@cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA.read_text()))


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass
class Reply:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    error_message: str = "fake error"
    usage: tuple[int, int] | None = None
    stream_delay: float = 0.0  # pause between streamed chunks


def shape_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Tool calls must be answered at once, each exactly once, and no result may be orphaned."""
    problems: list[str] = []
    pending: list[str] = []
    answered: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "tool":
            cid = m.get("tool_call_id")
            if cid not in pending:
                problems.append(f"message {i}: tool result {cid!r} answers no pending call")
            else:
                pending.remove(cid)
                if cid in answered:
                    problems.append(f"message {i}: tool call {cid!r} answered twice")
                answered.add(cid)
            continue
        if pending:
            problems.append(f"message {i}: {role} message before tool calls {pending} were answered")
            pending = []
        if role == "assistant" and m.get("tool_calls"):
            pending = [c["id"] for c in m["tool_calls"]]
    if pending:
        problems.append(f"request ends with unanswered tool calls {pending}")
    return problems


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI(FakeServer):
    """POST /v1/chat/completions; `script()` queues replies, `responder` computes them."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.schema_errors: list[str] = []
        self.shape_errors: list[str] = []
        self.queue: list[Reply] = []
        self.default = Reply(content="OK from the fake model")
        self.responder: Callable[[dict[str, Any]], Any] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def script(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.queue.clear()
        self.responder = None

    def tool_names_sent(self, i: int) -> list[str]:
        return [t["function"]["name"] for t in self.requests[i].get("tools") or []]

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.01)

    async def _reply_for(self, body: dict[str, Any]) -> Reply:
        if self.queue:
            return self.queue.pop(0)
        if self.responder is not None:
            reply = self.responder(body)
            return await reply if inspect.isawaitable(reply) else reply
        return self.default

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        errors = [e.message for e in validator().iter_errors(body)]
        if errors:
            self.schema_errors += errors
            return _error(400, "; ".join(errors)[:2000], "invalid_request_error")
        self.shape_errors += shape_problems(body.get("messages", []))
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = await self._reply_for(body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200:
                return _error(reply.status, reply.error_message, "server_error")
            calls = [self._call(c) for c in reply.tool_calls]
            prompt = _estimate(json.dumps(body.get("messages", [])))
            completion = _estimate((reply.content or "") + json.dumps(calls))
            usage = reply.usage or (prompt, completion)
            if body.get("stream"):
                return await self._stream(request, body, reply, calls, usage)
            return web.json_response(self._completion(body, reply, calls, usage))
        finally:
            self.in_flight -= 1

    def _call(self, call: ToolCall) -> dict[str, Any]:
        self._ids += 1
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        return {
            "id": call.id or f"call_{self._ids}",
            "type": "function",
            "function": {"name": call.name, "arguments": args},
        }

    def _completion(self, body: dict[str, Any], reply: Reply, calls: list[dict[str, Any]], usage) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(usage),
        }

    async def _stream(self, request, body, reply: Reply, calls, usage) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
        }

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        text = reply.content or ""
        for i in range(0, len(text), 20):
            await send({"content": text[i : i + 20]})
            if reply.stream_delay:
                await asyncio.sleep(reply.stream_delay)
        for index, call in enumerate(calls):
            fn = call["function"]
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": ""},
            }
            await send({"tool_calls": [head]})
            args = fn["arguments"]
            for i in range(0, len(args), 15):
                await send({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 15]}}]})
        await send({}, "tool_calls" if calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {**base, "choices": [], "usage": _usage(usage)}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}, status=status
    )
