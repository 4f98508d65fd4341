"""Reading a model's answer the way every OpenAI-compatible server sends it, streamed or not.

What the servers do differently, and what we do about it:
- Parallel tool calls in a stream: OpenAI numbers them by `index`; Gemini's endpoint and LiteLLM
  send calls with no index or a repeated one but distinct ids. A new id starts a new call.
- Provider fields on tool calls (Gemini's `extra_content.google.thought_signature`) and on the
  message (`reasoning_content`) must come back unchanged in the next request: they are kept.
- `content` may be null (tool-call turns, refusals); Ollama and llama-cpp-python reject a null
  content when it is sent back, so the message we keep always has a string.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4  # a tokenizer-free estimate, close enough for budgets
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators every message costs
IMAGE_PART_TOKENS = 1_000  # a conservative flat cost for one image content part

# Fields of a response message that a request message does not take (or that we send otherwise).
RESPONSE_ONLY = frozenset(
    {"role", "content", "refusal", "tool_calls", "annotations", "audio", "function_call"}
)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts (text, images)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def estimate_tokens(message: dict[str, Any]) -> int:
    """About four characters a token, plus a flat cost per image part and per message."""
    content = message.get("content")
    size = len(content_text(content))
    images = (
        sum(1 for p in content if isinstance(p, dict) and p.get("type") != "text")
        if isinstance(content, list)
        else 0
    )
    if message.get("tool_calls"):
        size += len(json.dumps(message["tool_calls"]))
    return size // CHARS_PER_TOKEN + images * IMAGE_PART_TOKENS + MESSAGE_OVERHEAD_TOKENS


@dataclass
class Completion:
    """One model answer: the assistant message to send back, and how the model stopped."""

    message: dict[str, Any]  # request shape: content never None, provider fields kept
    finish_reason: str | None = None
    refusal: str | None = None
    usage: dict[str, Any] | None = None  # the server's `usage` object, when it sent one

    @property
    def text(self) -> str:
        return content_text(self.message.get("content"))

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


def _extras(model: Any) -> dict[str, Any]:
    """Fields a server sent beyond OpenAI's schema (pydantic keeps them in model_extra)."""
    extra = getattr(model, "model_extra", None) or {}
    return {k: v for k, v in extra.items() if v is not None}


def completion_from_message(response: Any) -> Completion:
    """A non-streamed response as a Completion."""
    choice = response.choices[0]
    msg = choice.message
    refusal = getattr(msg, "refusal", None) or None
    message: dict[str, Any] = {"role": "assistant", "content": msg.content or refusal or ""}
    message.update({k: v for k, v in _extras(msg).items() if k not in RESPONSE_ONLY})
    if msg.tool_calls:
        message["tool_calls"] = [_call_dict(c) for c in msg.tool_calls]
    usage = response.usage.to_dict() if response.usage is not None else None
    return Completion(message, choice.finish_reason, refusal, usage)


def _call_dict(call: Any) -> dict[str, Any]:
    out = call.to_dict() if hasattr(call, "to_dict") else dict(call)
    fn = out.get("function") or {}
    out["type"] = out.get("type") or "function"
    out["function"] = {**fn, "name": fn.get("name") or "", "arguments": fn.get("arguments") or ""}
    return out


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Deep-merge provider fields of one delta into what arrived before (later values win)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@dataclass
class _Call:
    """One tool call being streamed in."""

    id: str | None
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


# Fields of a streamed tool call that the assembler reads itself; any other is a provider's.
CALL_FIELDS = frozenset({"index", "id", "type", "function"})


def _fields(node: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """A chunk object's provider fields: those beyond OpenAI's schema, null ones left out."""
    return {k: v for k, v in node.items() if k not in known and v is not None}


class StreamAssembler:
    """Joins stream chunks (the JSON objects of the events) into one Completion; `add` returns
    the text to show at once."""

    def __init__(self, separator: str = "") -> None:
        self.separator = separator  # put before the first visible text (a new paragraph)
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: list[_Call] = []
        self.extras: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self._by_id: dict[str, _Call] = {}
        self._by_index: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self.received = 0  # characters of text, arguments and provider fields so far

    def add(self, chunk: dict[str, Any]) -> str:
        if isinstance(usage := chunk.get("usage"), dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return ""
        choice = choices[0]
        if finish := choice.get("finish_reason"):
            self.finish_reason = finish
        delta = choice.get("delta")
        if not delta:
            return ""
        for tc in delta.get("tool_calls") or ():
            self._add_call(tc)
        self._add_extras(delta)
        content, refusal = delta.get("content"), delta.get("refusal")
        piece = (content or "") + (refusal or "")
        if not piece:
            return ""
        self.received += len(piece)
        shown = (self.separator if not (self.content or self.refusal) else "") + piece
        (self.refusal if refusal else self.content).append(piece)
        return shown

    def _add_extras(self, delta: dict[str, Any]) -> None:
        for key, value in _fields(delta, RESPONSE_ONLY).items():
            if isinstance(value, str):  # reasoning_content arrives in pieces, like content
                self.received += len(value)
                self.extras[key] = self.extras.get(key, "") + value
            elif isinstance(value, dict):
                _merge(self.extras.setdefault(key, {}), value)

    def _add_call(self, tc: dict[str, Any]) -> None:
        index = tc.get("index")
        call_id = tc.get("id") or None
        call: _Call | None
        if call_id is not None:
            call = self._by_id.get(call_id)  # a new id is a new call, whatever the index says
        elif index is not None:
            call = self._by_index.get(index)
        else:  # neither id nor index: more of the call before
            call = self.calls[-1] if self.calls else None
        if call is None:
            call = _Call(call_id)
            self.calls.append(call)
            if call_id is not None:
                self._by_id[call_id] = call
        if index is not None:
            self._by_index[index] = call
        fn = tc.get("function") or {}
        name = fn.get("name") or ""
        if name and name != call.name:  # some servers repeat the whole name in every chunk
            call.name += name
        if arguments := fn.get("arguments"):
            self.received += len(arguments)
            call.arguments.append(arguments)  # joined once at the end: a 1 MB argument stays linear
        _merge(call.extras, _fields(tc, CALL_FIELDS))

    def result(self) -> Completion:
        refusal = "".join(self.refusal) or None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or refusal or ""}
        message.update(self.extras)
        if self.calls:
            message["tool_calls"] = [
                {
                    **c.extras,
                    "id": c.id or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": "".join(c.arguments)},
                }
                for c in self.calls
            ]
        return Completion(message, self.finish_reason, refusal, self.usage)
