"""One traced model call, shared by the agent loop and the tools that ask the model (summarize).

It sends what every common OpenAI-compatible server accepts, reads what each of them sends back
(see tools/llm/completion.py for the message and stream handling), and always records the call: its
duration, its error, and its tokens, estimated when the server sent no `usage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from tools.llm.completion import Completion, StreamAssembler, completion_from_message, estimate_tokens
from tools.llm.model_stream import chunks
from tools.toolkit.errors import ServiceError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from tools.toolkit.context import ToolContext

TextSink = Callable[[str], Awaitable[None]]

# Error codes and wordings servers use for a prompt longer than the model's window: OpenAI and
# Azure send code `context_length_exceeded`; vLLM and LiteLLM say "maximum context length";
# llama.cpp's server says "exceeds the available context size".
CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
CONTEXT_WORDS = ("maximum context length", "context length", "context window", "context size")
# A server that cannot use tools at all: vLLM started without --enable-auto-tool-choice and
# --tool-call-parser, or an Ollama model without tool support ("<model> does not support tools").
TOOLS_REFUSED_WORDS = ("tool choice requires", "does not support tools", "tools are not supported")
CONTEXT_ERROR_STATUSES = (400, 413, 422)
# A stream that sends more characters than this per token of the output cap ignores the cap (a
# hostile or broken server): it is cut there, as if the cap had been reached.
STREAM_CHARS_PER_TOKEN = 8
CONTEXT_LIMIT = re.compile(r"(?:maximum context length is|context size|n_ctx\w*)\D{0,20}(\d{3,9})", re.I)


class ModelError(ServiceError):
    """The model could not be reached or answered with an error."""

    user_message = (
        "Sorry, I couldn't get an answer from the language model just now. Please try again in a moment."
    )

    def __init__(
        self,
        message: str,
        *,
        context_exceeded: bool = False,
        context_limit: int | None = None,
        tools_refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.context_exceeded = context_exceeded
        self.tools_refused = tools_refused  # the server cannot take tools at all
        self.context_limit = context_limit  # the window the server named in its error, if it did


@dataclass(frozen=True)
class ModelRequest:
    """What one call asks for; `body()` builds the JSON every server accepts."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    max_output_tokens: int = 8_192
    output_tokens_param: str = "max_completion_tokens"  # or "max_tokens" for older servers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            self.output_tokens_param: self.max_output_tokens,
        }
        if self.tools:
            # llama-cpp-python drops the tools when tool_choice is absent; vLLM needs it too.
            body["tools"] = self.tools
            body["tool_choice"] = "auto"
        return body

    def prompt_estimate(self) -> int:
        """Tokens the prompt costs by the same estimate the history budget uses."""
        return sum(estimate_tokens(m) for m in self.messages) + estimate_tools(self.tools)


def estimate_tools(tools: list[dict[str, Any]] | None) -> int:
    return len(json.dumps(tools)) // 4 if tools else 0


def is_context_error(exc: BaseException) -> bool:
    """True when a server refused the prompt as longer than the model's context window."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    code = str((error or {}).get("code") or getattr(exc, "code", "") or "") if isinstance(error, dict) else ""
    if code in CONTEXT_CODES:
        return True
    status = getattr(exc, "status_code", None)
    text = str(exc).lower()
    return status in CONTEXT_ERROR_STATUSES and any(w in text for w in CONTEXT_WORDS)


def is_tools_refusal(exc: BaseException) -> bool:
    """True when a server refused the request because it cannot take tools."""
    text = str(exc).lower()
    return getattr(exc, "status_code", None) == 400 and any(w in text for w in TOOLS_REFUSED_WORDS)


async def call_model(
    llm: AsyncOpenAI,
    ctx: ToolContext,
    request: ModelRequest,
    *,
    trace_name: str,
    timeout: float,
    on_text: TextSink | None = None,
    separator: str = "",
) -> Completion:
    """One model call: streamed to `on_text` when given, traced, its tokens added to the run.

    Raises ModelError (with `context_exceeded` set when the prompt did not fit), also before
    calling when the run has spent what a daily cap let it (`ctx.usage.limit`).
    """
    allowed = ctx.usage.limit
    if allowed is not None and ctx.usage.total_tokens >= allowed:
        raise ModelError(f"this run has used the {allowed:,} tokens it reserved under today's cap")
    started = time.perf_counter()
    error: str | None = None
    completion: Completion | None = None
    try:
        async with asyncio.timeout(timeout):
            if on_text is None:
                response = await llm.chat.completions.create(**request.body())
                completion = completion_from_message(response)
            else:
                completion = await _stream(llm, request, on_text, separator)
        return completion
    except TimeoutError:
        error = f"model call timed out after {timeout:.0f} s"
        raise ModelError(error) from None
    except Exception as exc:  # any client or server error: the caller decides what the user sees
        error = f"{type(exc).__name__}: {exc}"
        exceeded = is_context_error(exc)
        limit = CONTEXT_LIMIT.search(str(exc)) if exceeded else None
        raise ModelError(
            error,
            context_exceeded=exceeded,
            context_limit=int(limit.group(1)) if limit else None,
            tools_refused=bool(request.tools) and is_tools_refusal(exc),
        ) from exc
    finally:
        prompt, output, estimated = _tokens(request, completion)
        ctx.usage.add_counts(prompt, output, estimated=estimated)
        await ctx.trace.step(
            "model",
            trace_name,
            arguments=None,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=prompt,
            completion_tokens=output,
        )


def _tokens(request: ModelRequest, completion: Completion | None) -> tuple[int, int, bool]:
    """(prompt, completion, estimated): the server's usage, else our estimate of both."""
    usage = (completion.usage if completion else None) or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    output = int(usage.get("completion_tokens") or 0)
    if prompt or output:
        return (prompt, output, False)
    if completion is None:  # a failed call: the server may still have read the prompt
        return (0, 0, False)
    return (request.prompt_estimate(), estimate_tokens(completion.message), True)


async def _stream(llm: AsyncOpenAI, request: ModelRequest, on_text: TextSink, separator: str) -> Completion:
    """Forward text deltas as they come; assemble content, refusal and tool calls.

    The openai client sends the request (auth, retries, HTTP errors as its exceptions) as the
    JSON we built, without re-checking it against its types; the body is read as plain JSON
    (tools/llm/model_stream.py), not as a typed object per chunk.
    """
    assembler = StreamAssembler(separator)
    most = request.max_output_tokens * STREAM_CHARS_PER_TOKEN
    body = {**request.body(), "stream": True, "stream_options": {"include_usage": True}}
    response = await llm.post("/chat/completions", cast_to=httpx2.Response, body=body, stream=True)
    try:
        async with contextlib.aclosing(chunks(response)) as stream:
            async for chunk in stream:
                if text := assembler.add(chunk):
                    await on_text(text)
                if assembler.received > most:  # the server ignores our cap: stop reading
                    assembler.finish_reason = "length"
                    break
    finally:  # closed on every way out, a cancelled run included
        await response.aclose()
    return assembler.result()
