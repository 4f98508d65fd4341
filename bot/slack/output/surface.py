"""Where an answer appears while it is made: status, streamed text, then the final parts.

In assistant threads (DM threads) Slack's native status and streaming APIs are used. Elsewhere a
placeholder message in the thread shows the status, is edited with the text as it streams (at most
about once a second), and finally becomes the answer, so nothing is left behind.

When Slack refuses (bot/slack/output/refusals.py says what each refusal means): a placeholder that cannot
be edited is replaced by new messages and deleted (or, if that is refused too, made to point at
the answer); a message refused for its content is posted once more as plain text in smaller
pieces; a conversation that takes no message at all is explained to the asker privately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.output.calls import SLACK_FAILED, call, error_of, maybe_applied, recent_messages
from bot.slack.output.refusals import CONTENT, WHERE, Refusal, kind_of, note_for, refusal_of
from bot.slack.output.render import answer_metadata, answer_tag_of, fallback_text, markdown_messages
from bot.slack.output.safe_text import readable, stable_prefix
from bot.slack.output.split import split_markdown
from tools.toolkit.errors import InvariantError

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

STREAM_CAP = 10_000  # past this the live view stops growing; the final answer is posted split
THINKING = "Thinking…"
ATTACHMENT = "answer.md"
PLAIN_CHARS = 4_000  # a plain-text retry's pieces: Slack advises `text` of at most 4,000 characters
ANSWER_BELOW = "_The answer is below._"  # what a placeholder that could not be replaced says


async def unfurl_allowed(rt: Runtime, channel: str) -> bool:
    """SLACK_UNFURL_LINKS lets Slack preview links only in public channels (unknown counts as not)."""
    if not rt.settings.slack_unfurl_links:
        return False
    try:
        return (await rt.memberships.channel(rt.slack, channel)).is_public
    except SLACK_FAILED:
        return False


def capped_answer(text: str, limit: int) -> str:
    """An answer no longer than ANSWER_MAX_CHARS, saying where it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n\n_(The answer was cut here: it was longer than {limit:,} characters.)_"


def capped_parts(
    messages: list[dict[str, Any]], limit: int, total_chars: int
) -> tuple[list[dict[str, Any]], bool]:
    """At most `limit` messages: past it, the last one says the whole answer is attached as a file.

    Returns the messages to post and whether the file must follow them.
    """
    if len(messages) <= limit:
        return messages, False
    note = (
        f"_This answer is {len(messages)} messages long, more than the {limit} I post in a thread. "
        f"The whole answer ({total_chars:,} characters) is in the file {ATTACHMENT} below._"
    )
    extra = [b for b in messages[-1]["blocks"] if b.get("type") != "markdown"]  # the buttons stay last
    last = {"text": fallback_text(note), "blocks": [{"type": "markdown", "text": note}, *extra]}
    return [*messages[: limit - 1], last], True


async def tagged_messages(
    client: AsyncWebClient, channel: str, thread_ts: str | None, tag: str
) -> list[dict[str, Any]]:
    """The messages of answer `tag` in a thread (or a channel's recent ones), oldest first."""
    try:
        found = await recent_messages(client, channel, thread_ts)
    except SlackApiError as exc:
        if error_of(exc) != "thread_not_found":  # its root is gone, and with it what we posted
            raise
        return []
    return sorted((m for m in found if answer_tag_of(m)[0] == tag), key=lambda m: float(m["ts"]))


def _markdown_of(message: dict[str, Any]) -> str:
    blocks = message.get("blocks") or []
    texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "markdown"]
    return "\n\n".join(t for t in texts if isinstance(t, str)) or str(message.get("text") or "")


async def answer_shown(client: AsyncWebClient, channel: str, thread_ts: str | None, tag: str) -> bool:
    """Did an earlier attempt post the whole of answer `tag`?"""
    return any(answer_tag_of(m)[1] for m in await tagged_messages(client, channel, thread_ts, tag))


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
        max_messages: int = 10,
        on_stream: Callable[[str], Awaitable[None]] | None = None,
        unfurl: bool = False,
    ) -> None:
        self.unfurl = unfurl  # links may unfurl here (unfurl_allowed), unless the answer is private
        self.on_stream = on_stream  # told a native stream's ts at once: it can carry no tag yet
        self.tag = tag  # marks this answer's messages (metadata), so a later attempt finds them
        self.max_messages = max(1, max_messages)
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.team = team
        self.user = user
        self.native = native and thread_ts is not None
        self.interval = interval
        self.ts: str | None = None  # the placeholder or the streamed message
        self.shown = ""  # after resume() returned True: the answer the dead attempt showed
        self.text = ""  # everything streamed so far
        self.sent = 0  # how much of it Slack has seen
        self.streamed = ""  # what the native stream shows: the cleaned text[:sent]
        self.streaming = False
        self.garbled = False  # Slack may or may not show a streamed chunk: finish() replaces the stream
        self.stuck: str | None = None  # why Slack refused to edit the placeholder: not tried again
        self.told = False  # the asker has been told privately why the conversation shows nothing
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def for_channel(channel: str, thread_ts: str | None) -> bool:
        """Native status and streaming only work in assistant threads: DM threads."""
        return channel.startswith("D") and thread_ts is not None

    def _metadata(self, final: bool) -> dict[str, Any]:
        return {"metadata": answer_metadata(self.tag, final)} if self.tag else {}

    async def resume(self, streams: Sequence[str] = ()) -> bool:
        """Take over what an earlier attempt at this answer (its process died) left in Slack.

        True when that attempt had shown the whole answer: there is nothing left to do. Otherwise
        its first message becomes this attempt's placeholder and its other parts are deleted, so
        the thread ends with one answer, not a half one and a whole one. `streams` are native
        streams it started (they carry no tag until stopped): they are stopped and deleted.
        """
        if self.tag is None:
            return False
        mine = await tagged_messages(self.client, self.channel, self.thread_ts, self.tag)
        if any(answer_tag_of(m)[1] for m in mine):
            self.shown = "\n\n".join(_markdown_of(m) for m in mine)
            return True
        for ts in streams:
            if all(m["ts"] != ts for m in mine):
                with contextlib.suppress(SlackApiError):  # Slack may have ended it already
                    await call(self.client.chat_stopStream, channel=self.channel, ts=ts)
                await self._delete(ts)
        if not self.native and mine:
            self.ts = mine.pop(0)["ts"]
            await self._edit(text=f"_{THINKING}_", blocks=[], **self._metadata(False))
        for message in mine:  # native answers start again from the status: no placeholder to keep
            await self._delete(message["ts"])
        return False

    async def _delete(self, ts: str) -> None:
        try:
            await call(self.client.chat_delete, channel=self.channel, ts=ts)
        except SlackApiError as exc:
            if error_of(exc) != "message_not_found":
                raise

    async def begin(self) -> None:
        if self.native:
            await self.status(THINKING)
        elif self.ts is None:  # else resume() adopted the dead attempt's placeholder
            self.ts = (await self._post([{"text": f"_{THINKING}_"}], final=False))[0]

    async def status(self, text: str) -> None:
        if self.native:
            await call(
                self.client.assistant_threads_setStatus,
                channel_id=self.channel,
                thread_ts=self.thread_ts,
                status=text,
            )
        elif self.ts and not self.text:
            await self._edit(text=f"_{text}_")

    async def _edit(self, **message: Any) -> None:
        """Edit the placeholder while Slack allows it; after a refusal it is left alone (finish()
        then posts the answer anew), except when the whole conversation refuses (raised)."""
        if self.stuck is not None:
            return
        try:
            await call(self.client.chat_update, channel=self.channel, ts=self.ts, **message)
        except SlackApiError as exc:
            why = refusal_of(exc)
            self.stuck = why.code
            if why.kind == WHERE:
                raise
            log.warning(
                "Slack refused to edit the placeholder (%s): the answer will be a new message", why.code
            )

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
            if self.sent >= len(self.text) or self.sent >= STREAM_CAP or self.garbled or self.stuck:
                return
            upto = min(len(self.text), STREAM_CAP)
            if (
                upto == len(self.text) and not final
            ):  # hold back a mention still arriving, so it is defused whole
                upto = max(self.sent, stable_prefix(self.text))
                if upto == self.sent:
                    return
            if self.native:
                shown = await readable(self.client, self.text[:upto])
                if not shown.startswith(self.streamed):  # later text changed how earlier text reads
                    log.info("the streamed answer is replaced: its clean-up changed what was shown")
                    self.garbled = True  # (a link completed across pieces): finish() posts clean parts
                    return
                if shown != self.streamed:
                    await self._stream(shown[len(self.streamed) :])
                self.streamed = shown
            else:
                shown = await readable(self.client, self.text[:upto]) + (
                    " …" if upto < len(self.text) else ""
                )
                await self._edit(text=fallback_text(shown), blocks=[{"type": "markdown", "text": shown}])
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
                if self.on_stream is not None:
                    await self.on_stream(started["ts"])
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

    async def finish(
        self, final: str, extra_blocks: list[dict[str, Any]] | None = None, *, private: bool = False
    ) -> list[str]:
        """Make the answer in Slack equal `final`; returns the timestamps of its messages.

        The last message is marked final only when everything, attachment included, is shown.
        `private`: the answer drew on non-public content, so its links never unfurl.
        """
        await self._stop_flusher()
        try:
            if self.native:
                return await self._finish_native(final, extra_blocks, private)
            if self.ts is None:
                raise InvariantError("the surface finished before it began")
            return await self.post_whole(final, extra_blocks, into=self.ts, private=private)
        except SlackApiError as exc:
            if kind_of(exc) == WHERE:  # the conversation takes nothing more: the asker gets it
                await self.tell_asker(refusal_of(exc), final)
            raise

    async def _finish_native(
        self, final: str, extra_blocks: list[dict[str, Any]] | None, private: bool
    ) -> list[str]:
        fits = len(final) <= STREAM_CAP and self.text == final
        if self.streaming and fits and not self.garbled:
            await self.flush(final=True)  # the last piece may reveal the stream must be replaced
        if self.streaming and fits and not self.garbled:
            await call(
                self.client.chat_stopStream,
                channel=self.channel,
                ts=self.ts,
                blocks=extra_blocks,
                **self._metadata(True),
            )
            stamps = [self.ts] if self.ts else []
        else:
            if self.streaming:  # the live view cannot hold it all: replace it with clean parts
                await call(self.client.chat_stopStream, channel=self.channel, ts=self.ts)
                await self._delete(str(self.ts))
            stamps = await self.post_whole(final, extra_blocks, private=private)
        await self.clear()
        return stamps

    async def post_whole(
        self,
        final: str,
        extra_blocks: list[dict[str, Any]] | None = None,
        *,
        into: str | None = None,
        private: bool = False,
    ) -> list[str]:
        """Show `final` in at most max_messages messages (past that the whole answer is attached),
        the first one in place of the placeholder `into`, or all as new messages where none was
        shown (native threads, slash commands). People it mentions are shown by name."""
        shown = await readable(self.client, final)
        messages, attach = capped_parts(markdown_messages(shown, extra_blocks), self.max_messages, len(final))
        stamps = await self._show(messages, into=into, final=not attach, private=private)
        if attach:
            await self._attach(final, stamps[-1], messages[-1])
        return stamps

    async def _show(
        self, messages: list[dict[str, Any]], *, into: str | None, final: bool, private: bool
    ) -> list[str]:
        """`messages` in order, the first in place of the placeholder `into` while Slack lets it
        be edited; otherwise all as new messages, and the placeholder is retired."""
        if into is not None:
            if into != self.ts:
                raise InvariantError("only the surface's own placeholder is replaced")
            await self._edit(**messages[0], **self._metadata(final and len(messages) == 1))
            if self.stuck is None:
                return [into, *await self._post(messages[1:], final=final, private=private)]
        stamps = await self._post(messages, final=final, private=private)
        if into is not None:
            await self._retire(into)
        return stamps

    async def _retire(self, ts: str) -> None:
        """A placeholder the answer could not replace: deleted, or else made to say where the
        answer is; if Slack refuses both, it stays as it was."""
        try:
            await self._delete(ts)
            return
        except SlackApiError as exc:
            log.warning("could not delete the placeholder %s (%s)", ts, error_of(exc))
        try:
            await call(self.client.chat_update, channel=self.channel, ts=ts, text=ANSWER_BELOW, blocks=[])
        except SlackApiError as exc:
            log.warning("the placeholder %s stays as it is: Slack refused to edit it (%s)", ts, error_of(exc))

    async def _post(self, messages: list[dict[str, Any]], *, final: bool, private: bool = True) -> list[str]:
        """Post parts in order in the thread; only the last may carry the final mark. A part
        Slack refuses for its content is posted once more as plain text in smaller pieces."""
        stamps = []
        unfurl = self.unfurl and not private
        for i, message in enumerate(messages):
            last = final and i == len(messages) - 1
            try:
                stamps.append(await self._post_one(message, last, unfurl))
                continue
            except SlackApiError as exc:
                why = refusal_of(exc)
                if why.kind != CONTENT:
                    raise
                log.warning("Slack refused a message (%s); posting it once more as plain text", why.code)
            pieces = split_markdown(_markdown_of(message), PLAIN_CHARS)
            for j, piece in enumerate(pieces):
                stamps.append(await self._post_one({"text": piece}, last and j == len(pieces) - 1, unfurl))
        return stamps

    async def _post_one(self, message: dict[str, Any], final: bool, unfurl: bool) -> str:
        kwargs = {
            "channel": self.channel,
            **{k: v for k, v in message.items() if v or k != "blocks"},  # no empty block list
            **self._metadata(final),
            "unfurl_links": unfurl,
            "unfurl_media": unfurl,
        }
        if self.thread_ts:
            kwargs["thread_ts"] = self.thread_ts
        return str((await call(self.client.chat_postMessage, **kwargs))["ts"])

    async def tell_asker(self, why: Refusal, answer: str | None = None) -> bool:
        """Tell the asker privately why nothing (more) appears in the conversation, with the
        answer when there is one: an ephemeral message there if Slack still takes one, else a DM.
        Returns whether they were told."""
        if self.told:  # e.g. finish() told them, then the run failed with the same refusal
            return True
        note = note_for(self.channel, why, answered=answer is not None)
        messages = [
            {"text": note},
            *(markdown_messages(await readable(self.client, answer)) if answer else []),
        ]
        where = {"thread_ts": self.thread_ts} if self.thread_ts else {}
        try:
            for message in messages:
                await call(
                    self.client.chat_postEphemeral, channel=self.channel, user=self.user, **where, **message
                )
            self.told = True
            return True
        except SlackApiError as exc:
            log.info(
                "no ephemeral message in %s (%s): writing to %s directly",
                self.channel,
                error_of(exc),
                self.user,
            )
        try:
            dm = (await call(self.client.conversations_open, users=self.user))["channel"]["id"]
            for message in messages:
                await call(self.client.chat_postMessage, channel=dm, **message)
            self.told = True
            return True
        except SlackApiError as exc:
            log.warning(
                "could not tell %s that %s refused the answer: %s", self.user, self.channel, error_of(exc)
            )
            return False

    async def _attach(self, final: str, last_ts: str, last: dict[str, Any]) -> None:
        """The whole answer as a file under its shown parts; then the answer is marked final."""
        try:
            await self.client.files_upload_v2(
                channel=self.channel,
                thread_ts=self.thread_ts,
                content=final,
                filename=ATTACHMENT,
                title="The whole answer",
            )
        except Exception as exc:  # the parts are shown; say what is missing rather than fail
            log.warning("could not attach %s: %s", ATTACHMENT, exc)
            why = error_of(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            text = (
                f"_I could not attach {ATTACHMENT} with the rest of this answer ({why}). Please ask again._"
            )
            await self._post([{"text": text}], final=True)
            return
        await call(self.client.chat_update, channel=self.channel, ts=last_ts, **last, **self._metadata(True))

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
                await self._post(markdown_messages(text), final=True)
            elif self.ts is None:  # nothing shown yet (or nothing left to adopt): say it anew
                await self._post([{"text": text}], final=True)
            else:
                await self._show([{"text": text, "blocks": []}], into=self.ts, final=True, private=True)
        finally:
            await self.clear()
