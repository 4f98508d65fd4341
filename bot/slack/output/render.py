"""An answer -> Slack messages: standard Markdown in `markdown` blocks, split under Slack's limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.output.safe_text import neutralize, neutralize_blocks, readable
from bot.slack.output.split import split_markdown

MARKDOWN_BLOCK_LIMIT = 12_000
FALLBACK_CHARS = 300
ANSWER_EVENT = "switchboard_answer"  # message metadata: which answer a message belongs to


def answer_metadata(tag: str, final: bool) -> dict[str, Any]:
    """Marks a message as part of the answer `tag`; `final` only once the whole answer is shown,
    so a process that takes over after a crash knows whether anything is left to do."""
    return {"event_type": ANSWER_EVENT, "event_payload": {"tag": tag, "final": final}}


def answer_tag_of(message: dict[str, Any]) -> tuple[str | None, bool]:
    """(tag, final) of one of our answer messages; (None, False) for any other message."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != ANSWER_EVENT:
        return None, False
    payload = metadata.get("event_payload") or {}
    return payload.get("tag"), payload.get("final") is True


def fallback_text(markdown: str) -> str:
    """The plain `text` Slack shows in notifications when a message has blocks."""
    flat = " ".join(markdown.split())
    return flat if len(flat) <= FALLBACK_CHARS else flat[: FALLBACK_CHARS - 1] + "…"


def markdown_messages(text: str, extra_blocks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """chat.postMessage arguments for each part; `extra_blocks` go under the last part.

    Broadcasts and disguised links are defused before splitting, in the text and in every block
    (bot/slack/output/safe_text.py); people are named by the caller where others see the post.
    """
    parts = split_markdown(neutralize(text), MARKDOWN_BLOCK_LIMIT) or ["(empty answer)"]
    extra_blocks = neutralize_blocks(extra_blocks) if extra_blocks else extra_blocks
    out = []
    for i, part in enumerate(parts):
        blocks: list[dict[str, Any]] = [{"type": "markdown", "text": part}]
        if extra_blocks and i == len(parts) - 1:
            blocks += extra_blocks
        out.append({"text": fallback_text(part), "blocks": blocks})
    return out


async def post_answer(
    client: AsyncWebClient,
    channel: str,
    thread_ts: str | None,
    text: str,
    extra_blocks: list[dict[str, Any]] | None = None,
    via: Callable[..., Awaitable[Any]] | None = None,
) -> list[str]:
    """Post an answer in order, in one thread; returns the message timestamps.

    `via(fn, **kwargs)` wraps each call (bot.slack.output.calls.call retries transient failures).
    People it mentions are shown by name and not notified (bot/slack/output/safe_text.py).
    """
    stamps = []
    for message in markdown_messages(await readable(client, text), extra_blocks):
        kwargs: dict[str, Any] = {"channel": channel, **message}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if via is not None:
            response = await via(client.chat_postMessage, **kwargs)
        else:
            response = await client.chat_postMessage(**kwargs)
        stamps.append(response["ts"])
    return stamps


FEEDBACK_ACTION = "answer_feedback"
STEPS_ACTION = "show_steps"


def steps_blocks(run_id: int | str) -> list[dict[str, Any]]:
    """A "Show steps" button: the clicker alone sees the run's trace (bot.slack.output.steps_view)."""
    button = {
        "type": "button",
        "action_id": STEPS_ACTION,
        "text": {"type": "plain_text", "text": "Show steps"},
        "value": str(run_id),
    }
    return [{"type": "actions", "block_id": f"steps-{run_id}", "elements": [button]}]


def feedback_blocks(run_id: int | str) -> list[dict[str, Any]]:
    """Thumbs up/down and "Show steps" under an LLM answer; the values carry the run: its id, or
    "j<job>" for a run written with its job's end (bot/work/traced_run.py `reference`)."""
    from slack_sdk.models.blocks import ContextActionsBlock, FeedbackButtonObject, FeedbackButtonsElement

    element = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION,
        positive_button=FeedbackButtonObject(text="Good answer", value=f"good:{run_id}"),
        negative_button=FeedbackButtonObject(text="Bad answer", value=f"bad:{run_id}"),
    )
    return [ContextActionsBlock(elements=[element]).to_dict(), *steps_blocks(run_id)]
