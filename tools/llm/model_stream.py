"""A model's streamed answer read as plain JSON: server-sent events straight into dicts.

openai-python builds a pydantic object per chunk and checks its types; for a 50-token answer
that was a fifth of the bot's CPU. The request still goes through the openai client (auth,
retries, HTTP errors as openai's exceptions); only the body of a 200 is read here, and failures
while reading become the same openai exceptions its own stream raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx2
from openai import APIConnectionError, APIError, APITimeoutError

DONE = b"[DONE]"
DRAIN_SECONDS = 0.5  # after [DONE]: how long the body's end is waited for (the connection is kept)
LINE_ENDS = (10, 13)  # LF, CR


class EventDecoder:
    """Splits bytes into the data of each event, as the SSE spec reads them: lines end with CR,
    LF or CRLF (also across chunks); `data:` lines join with LF; an empty line ends the event;
    comments (`:`) and other fields are ignored, as openai-python ignores them for chat streams."""

    def __init__(self) -> None:
        self._rest = b""  # an unfinished line
        self._data: list[bytes] = []  # the data lines of the event being read
        self._after_cr = False  # the last chunk ended with CR: a leading LF belongs to it

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._after_cr = False
        buffer = self._rest + chunk if self._rest else chunk
        if not buffer:
            return []  # the chunk was the LF of a CRLF
        lines = buffer.splitlines()  # bytes split at CR, LF and CRLF only
        if buffer[-1] in LINE_ENDS:
            self._rest, self._after_cr = b"", buffer[-1] == 13
        else:
            self._rest = lines.pop()
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value[:1] == b" " else value)
        return events


async def chunks(response: httpx2.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON chunks of a streamed chat completion, until [DONE] or the body's end.

    An error reported in the stream raises openai's APIError (as openai-python does for
    `{"error": ...}`); a read that times out or breaks raises APITimeoutError /
    APIConnectionError, as openai-python's own stream does.
    """
    decoder = EventDecoder()
    try:
        async with contextlib.aclosing(response.aiter_bytes()) as body:
            async for raw in body:
                for data in decoder.feed(raw):
                    if data.startswith(DONE):
                        await _drain(body)
                        return
                    chunk = json.loads(data)
                    if error := _error_in(chunk):
                        raise _stream_error(error, response.request)
                    yield chunk
    except httpx2.TimeoutException as exc:
        raise APITimeoutError(request=response.request) from exc
    except httpx2.TransportError as exc:
        raise APIConnectionError(request=response.request) from exc


def _error_in(chunk: Any) -> Any:
    """A failure the server reports inside the stream: OpenAI and vLLM send {"error": {...}};
    older vLLM and FastChat-derived servers send the error object itself ("object": "error")."""
    if not isinstance(chunk, dict):
        return None
    return chunk.get("error") or (chunk if chunk.get("object") == "error" else None)


def _stream_error(error: Any, request: httpx2.Request) -> APIError:
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return APIError(message, request, body=error)


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (normally just the body's end) so the connection goes back to
    the pool for the next call; a server that keeps the body open is cut off after DRAIN_SECONDS."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in body:
                pass
    except (TimeoutError, httpx2.TransportError):
        pass
