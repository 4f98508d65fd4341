"""Slack's assistant view: a greeting with suggested prompts, a title, the same LLM orchestrator."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant

from bot.runtime import Runtime
from bot.slack.answering.conversation import Turn, apology_if_database_down, clean_text
from bot.slack.answering.turns import accept
from bot.slack.door.workspace import event_workspace
from bot.slack.listeners.messages import is_person_talking
from bot.slack.output.calls import call

log = logging.getLogger(__name__)

GREETING = (
    "Hi! I'm Switchboard. Ask me anything: I can check the weather, search the web, read a page, "
    "catch you up on a channel or tell the time somewhere. Slash commands such as `/weather Karachi` "
    "work in channels too."
)
MAX_PROMPTS = 4  # assistant.threads.setSuggestedPrompts takes at most four
PROMPTS = [
    {"title": "Weather", "message": "What's the weather tomorrow in Karachi, and is it warmer than Berlin?"},
    {"title": "Catch up on this channel", "message": "Summarize the last day of this channel"},
    {"title": "Read a page", "message": "Summarize https://docs.slack.dev/ai/ for me"},
    {
        "title": "Search the web",
        "message": "Search the web for the Bolt for Python changelog and tell me what changed",
    },
]


def viewing_note(channel_id: str | None) -> str:
    """What the model is told about the channel open beside the assistant panel."""
    if not channel_id or channel_id[:1] not in ("C", "G"):
        return ""
    return (
        f'[The user has the channel <#{channel_id}> open beside this assistant thread: "this channel" '
        f"means <#{channel_id}> (read it with read_channel using channel id {channel_id}).]"
    )


def _context_channel(payload: dict[str, Any]) -> str | None:
    thread = payload.get("assistant_thread")
    context = thread.get("context") if isinstance(thread, dict) else None
    channel = context.get("channel_id") if isinstance(context, dict) else None
    return channel if isinstance(channel, str) and channel else None


def title_for(question: str) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= 60 else flat[:59] + "…"


async def greet(rt: Runtime, channel: str, thread_ts: str) -> None:
    await call(rt.slack.chat_postMessage, channel=channel, thread_ts=thread_ts, text=GREETING)
    await call(
        rt.slack.assistant_threads_setSuggestedPrompts,
        channel_id=channel,
        thread_ts=thread_ts,
        prompts=PROMPTS[:MAX_PROMPTS],
        title="Try one of these:",
    )


async def set_title(rt: Runtime, channel: str, thread: str, event: dict[str, Any]) -> None:
    question = clean_text(event.get("text", ""), rt.bot_user_id)
    await call(
        rt.slack.assistant_threads_setTitle,
        channel_id=channel,
        thread_ts=thread,
        title=title_for(question or "New conversation"),
    )


async def reply(rt: Runtime, event: dict[str, Any], team: str) -> None:
    """Queued before the ack (see bot/slack/listeners/messages.py); the title comes after."""
    channel, thread = event["channel"], event["thread_ts"]
    async with apology_if_database_down(rt, channel, thread):  # posting needs no database
        if await rt.db.conversations.find(team, channel, thread) is None:
            rt.tasks.spawn(set_title(rt, channel, thread, event), name=f"assistant title {thread}")
        viewed = await rt.db.assistant_contexts.viewed(channel, thread, team)
        await accept(rt, turn_of(event, team, viewed))


def turn_of(event: dict[str, Any], team: str, viewed: str | None) -> Turn:
    """An assistant thread's message as a turn: answered in its thread, with the channel the
    person is viewing as context."""
    raw = event.get("files")
    files: list[Any] = raw if isinstance(raw, list) else []
    return Turn(
        team=team,
        channel=event["channel"],
        user=event.get("user", ""),
        text=event.get("text", "") if isinstance(event.get("text"), str) else "",
        ts=event["ts"],
        thread_ts=event["thread_ts"],
        reply_thread_ts=event["thread_ts"],
        trigger="assistant",
        files=tuple(f for f in files if isinstance(f, dict)),
        context=viewing_note(viewed),
    )


async def remember(rt: Runtime, payload: dict[str, Any], team: str | None) -> None:
    thread, viewed = payload["assistant_thread"], _context_channel(payload)
    if viewed:
        await rt.db.assistant_contexts.save(thread["channel_id"], thread["thread_ts"], viewed, team)


async def start_thread(rt: Runtime, payload: dict[str, Any], team: str | None) -> None:
    await remember(rt, payload, team)
    thread = payload["assistant_thread"]
    await greet(rt, thread["channel_id"], thread["thread_ts"])


def register(app: AsyncApp, rt: Runtime) -> None:
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def on_started(payload: dict[str, Any], body: dict[str, Any]) -> None:
        rt.tasks.spawn(start_thread(rt, payload, event_workspace(body)), name="assistant greeting")

    @assistant.thread_context_changed
    async def on_context_changed(payload: dict[str, Any], body: dict[str, Any]) -> None:
        # Our own store (the database), not Bolt's default one that rewrites the greeting's metadata.
        rt.tasks.spawn(remember(rt, payload, event_workspace(body)), name="assistant context")

    @assistant.user_message
    async def on_user_message(payload: dict[str, Any], body: dict[str, Any]) -> None:
        if not is_person_talking(payload, rt.bot_user_id) or payload.get("subtype") == "thread_broadcast":
            return
        await reply(rt, payload, event_workspace(body))

    app.use(assistant)
