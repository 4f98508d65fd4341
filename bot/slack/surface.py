"""Where an answer appears while it is made: status, streamed text, then the final parts.

In assistant threads (DM threads) Slack's native status and streaming APIs are used. Elsewhere a
placeholder message in the thread shows the status, is edited with the text as it streams (at most
about once a second), and finally becomes the answer, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.calls import call, error_of, maybe_applied
from bot.slack.mentions import neutralize, stable_prefix
from bot.slack.render import fallback_text, markdown_messages, post_answer

log = logging.getLogger(__name__)

STREAM_CAP = 10_000  # past this the live view stops growing; the final answer is posted split
THINKING = "Thinking…"


class AnswerSurface:
    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str | None,
        *,
        team: str,
        user: str,
        native: bool,
        interval: float = 1.0,
        tag: str | None = None,
    ) -> None:
        self.tag = tag
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.team = team
        self.user = user
        self.native = native and thread_ts is not None
        self.interval = interval
        self.ts: str | None = None  # the placeholder or the streamed message
        self.text = ""  # everything streamed so far
        self.sent = 0  # how much of it Slack has seen
        self.streaming = False
        self.garbled = False  # Slack may or may not show a streamed chunk: finish() replaces the stream
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def for_channel(channel: str, thread_ts: str | None) -> bool:
        """Native status and streaming only work in assistant threads: DM threads."""
        return channel.startswith("D") and thread_ts is not None

    async def resume(self) -> bool:  # TEMP until branch a lands
        return False

    async def begin(self) -> None:
        if self.native:
            await self.status(THINKING)
        else:
            kwargs: dict[str, Any] = {"channel": self.channel, "text": f"_{THINKING}_"}
            if self.thread_ts:
                kwargs["thread_ts"] = self.thread_ts
            self.ts = (await call(self.client.chat_postMessage, **kwargs))["ts"]

    async def status(self, text: str) -> None:
        if self.native:
            await call(
                self.client.assistant_threads_setStatus,
                channel_id=self.channel,
                thread_ts=self.thread_ts,
                status=text,
            )
        elif self.ts and not self.text:
            await call(self.client.chat_update, channel=self.channel, ts=self.ts, text=f"_{text}_")

    async def delta(self, piece: str) -> None:
        self.text += piece
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_every())

    async def _flush_every(self) -> None:
        while True:
            try:
                await self.flush()
            except Exception:  # the live view is best effort; finish() posts the answer for real
                log.warning("could not update the streamed answer", exc_info=True)
            await asyncio.sleep(self.interval)

    async def flush(self, final: bool = False) -> None:
        """Send what Slack has not seen yet: one append or one edit per interval."""
        async with self._lock:
            if self.sent >= len(self.text) or self.sent >= STREAM_CAP or self.garbled:
                return
            upto = min(len(self.text), STREAM_CAP)
            if (
                upto == len(self.text) and not final
            ):  # hold back a mention still arriving, so it is defused whole
                upto = max(self.sent, stable_prefix(self.text))
                if upto == self.sent:
                    return
            if self.native:
                await self._stream(neutralize(self.text[self.sent : upto]))
            else:
                shown = neutralize(self.text[:upto]) + (" …" if upto < len(self.text) else "")
                await call(
                    self.client.chat_update,
                    channel=self.channel,
                    ts=self.ts,
                    text=fallback_text(shown),
                    blocks=[{"type": "markdown", "text": shown}],
                )
            self.sent = upto

    async def _stream(self, chunk: str) -> None:
        """Start or extend the native stream. Neither call is idempotent, so a failure that Slack
        may have applied is not repeated: the live view stops, and finish() posts clean parts."""
        try:
            if not self.streaming:
                started = await call(
                    self.client.chat_startStream,
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    markdown_text=chunk,
                    recipient_team_id=self.team,
                    recipient_user_id=self.user,
                )
                self.ts, self.streaming = started["ts"], True
            else:
                await call(
                    self.client.chat_appendStream, channel=self.channel, ts=self.ts, markdown_text=chunk
                )
        except SlackApiError as exc:
            if not maybe_applied(exc):
                raise
            log.warning("the streamed answer may be garbled (%s); it will be replaced", error_of(exc))
            self.garbled = True

    async def _stop_flusher(self) -> None:
        if self._flusher is not None:
            async with self._lock:  # never cancel a flush mid-call: Slack may have applied it
                self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def finish(self, final: str, extra_blocks: list[dict[str, Any]] | None = None) -> list[str]:
        """Make the answer in Slack equal `final`; returns the timestamps of its messages."""
        await self._stop_flusher()
        if self.native:
            return await self._finish_native(final, extra_blocks)
        messages = markdown_messages(final, extra_blocks)
        first, rest = messages[0], messages[1:]
        assert self.ts is not None
        await call(self.client.chat_update, channel=self.channel, ts=self.ts, **first)
        stamps = [self.ts]
        for message in rest:
            kwargs = {"channel": self.channel, **message}
            if self.thread_ts:
                kwargs["thread_ts"] = self.thread_ts
            stamps.append((await call(self.client.chat_postMessage, **kwargs))["ts"])
        return stamps

    async def _finish_native(self, final: str, extra_blocks: list[dict[str, Any]] | None) -> list[str]:
        fits = len(final) <= STREAM_CAP and self.text == final and not self.garbled
        if self.streaming and fits:
            await self.flush(final=True)
            await call(self.client.chat_stopStream, channel=self.channel, ts=self.ts, blocks=extra_blocks)
            stamps = [self.ts] if self.ts else []
        else:
            if self.streaming:  # the live view cannot hold it all: replace it with clean parts
                await call(self.client.chat_stopStream, channel=self.channel, ts=self.ts)
                await call(self.client.chat_delete, channel=self.channel, ts=self.ts)
            stamps = await post_answer(self.client, self.channel, self.thread_ts, final, extra_blocks, call)
        await self.clear()
        return stamps

    async def clear(self) -> None:
        if self.native:
            with contextlib.suppress(Exception):
                await self.status("")

    async def fail(self, text: str) -> None:
        """Replace whatever is showing with a short apology; clear the status."""
        await self._stop_flusher()
        try:
            if self.native:
                if self.streaming:
                    await call(self.client.chat_stopStream, channel=self.channel, ts=self.ts)
                await post_answer(self.client, self.channel, self.thread_ts, text, None, call)
            elif self.ts:
                await call(self.client.chat_update, channel=self.channel, ts=self.ts, text=text, blocks=[])
        finally:
            await self.clear()
