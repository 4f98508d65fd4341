"""Opt-in behaviours of real OpenAI-compatible servers, for the fake model server to copy.

Each flag copies one server's behaviour as its own source or documentation shows it (sources in
tests/fakes/SOURCES.md). `PROFILES` groups them the way each server ships; the provider matrix
(tests/test_providers.py) runs the same conversations against every profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quirks:
    name: str = "openai"
    # llama-cpp-python's function-calling handlers drop `tools` when `tool_choice` is absent:
    # the model never sees them and answers in plain text.
    tools_need_tool_choice: bool = False
    # Parallel tool calls in a stream: "repeated" = every call at index 0 with its own id
    # (LiteLLM's proxy, seen live); "missing" = no index at all (Gemini's OpenAI endpoint).
    stream_call_index: str = "ordinal"
    # Gemini 3: the first tool call of each step carries extra_content.google.thought_signature;
    # a later request of the same turn that does not echo it gets a 400.
    thought_signatures: bool = False
    # `content: null` (or missing) in a request: Ollama answers 400, llama-cpp-python 500.
    null_content_status: int | None = None
    # llama-cpp-python ignores stream_options.include_usage: streams carry no usage at all.
    stream_usage: bool = True
    # A model window this small (the fake's estimate of the whole request): a bigger prompt gets
    # OpenAI's 400 with code context_length_exceeded (Ollama would silently drop old messages).
    context_tokens: int | None = None
    # How the final text answer ends: "length" (cut at the output cap), "content_filter"
    # (Azure's filter: empty content), "refusal" (OpenAI: `refusal` set, content null).
    final_answer: str | None = None
    # vLLM started without --enable-auto-tool-choice --tool-call-parser: any request with
    # tool_choice "auto" gets a 400 naming the missing flags.
    auto_tool_choice_refused: bool = False


PROFILES = [
    Quirks("openai"),
    Quirks("llama-cpp-python", tools_need_tool_choice=True, null_content_status=500, stream_usage=False),
    Quirks("ollama", null_content_status=400),
    Quirks("gemini", stream_call_index="missing", thought_signatures=True),
    Quirks("litellm", stream_call_index="repeated"),
    Quirks("small-context", context_tokens=9_000),
    Quirks("length", final_answer="length"),
    Quirks("azure-content-filter", final_answer="content_filter"),
    Quirks("refusal", final_answer="refusal"),
]

REFUSAL = "I'm sorry, but I can't help with that request."
TOOLS_IGNORED = "I have no tools, so I cannot look that up."
VLLM_TOOL_CHOICE_ERROR = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)
GEMINI_SIGNATURE_ERROR = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools "
    "to work correctly, and missing thought_signature may lead to degraded model performance."
)


def signature_for(call_id: str) -> str:
    return f"sig-{call_id}"


def request_problem(quirks: Quirks, body: dict[str, Any]) -> tuple[int, str, str | None] | None:
    """(status, message, code) of the error this server answers to `body`, or None."""
    messages = body.get("messages") or []
    if quirks.null_content_status:
        for i, m in enumerate(messages):
            if m.get("content") is None:
                if quirks.null_content_status == 400:  # Ollama's OpenAI layer
                    return 400, "invalid message content type: <nil>", None
                return 500, f"messages.{i}.content: 'NoneType' object is not iterable", None
    if quirks.thought_signatures:
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        for m in messages[last_user + 1 :]:
            calls = m.get("tool_calls") or []
            if calls:
                google = (calls[0].get("extra_content") or {}).get("google") or {}
                signature = google.get("thought_signature")
                if signature != signature_for(calls[0].get("id", "")):
                    return 400, GEMINI_SIGNATURE_ERROR, None
    if quirks.auto_tool_choice_refused and body.get("tool_choice") == "auto":
        return 400, VLLM_TOOL_CHOICE_ERROR, None
    if quirks.context_tokens is not None:
        size = len(json.dumps(messages)) // 4 + len(json.dumps(body.get("tools") or [])) // 4
        if size > quirks.context_tokens:
            message = (
                f"This model's maximum context length is {quirks.context_tokens} tokens. However, your "
                f"messages resulted in {size} tokens. Please reduce the length of the messages."
            )
            return 400, message, "context_length_exceeded"
    return None


def tools_dropped(quirks: Quirks, body: dict[str, Any]) -> bool:
    return quirks.tools_need_tool_choice and bool(body.get("tools")) and "tool_choice" not in body


def decorate_call(quirks: Quirks, call: dict[str, Any], first: bool) -> dict[str, Any]:
    if quirks.thought_signatures and first:
        return {**call, "extra_content": {"google": {"thought_signature": signature_for(call["id"])}}}
    return call


def stream_index(quirks: Quirks, index: int) -> dict[str, Any]:
    if quirks.stream_call_index == "missing":
        return {}
    return {"index": 0 if quirks.stream_call_index == "repeated" else index}


def final_answer(quirks: Quirks, content: str | None) -> tuple[str | None, str | None, str | None]:
    """(content, refusal, finish_reason) of a text answer under this profile."""
    if quirks.final_answer == "length":
        text = content or ""
        return text[: max(1, len(text) // 2)], None, "length"
    if quirks.final_answer == "content_filter":
        return "", None, "content_filter"
    if quirks.final_answer == "refusal":
        return None, REFUSAL, "stop"
    return content, None, None
