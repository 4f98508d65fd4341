"""Slack's assistant view: a greeting with suggested prompts, a title, the same LLM orchestrator."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant

from bot.runtime import Runtime
from bot.slack.calls import call
from bot.slack.conversation import Turn, apology_if_database_down, clean_text
from bot.slack.turns import take_turn

log = logging.getLogger(__name__)

GREETING = (
    "Hi! I'm Switchboard. Ask me anything: I can check the weather, search the web, read a page, "
    "catch you up on a channel or tell the time somewhere. Slash commands such as `/weather Karachi` "
    "work in channels too."
)
PROMPTS = [
    {"title": "Weather", "message": "What's the weather tomorrow in Karachi, and is it warmer than Berlin?"},
    {
        "title": "Search the web",
        "message": "Search the web for the Bolt for Python changelog and tell me what changed",
    },
    {"title": "Read a page", "message": "Summarize https://docs.slack.dev/ai/ for me"},
    {"title": "Catch up on a channel", "message": "Summarize the last day of #general"},
    {"title": "Time zones", "message": "What time is it in Tokyo?"},
    {
        "title": "Slash commands",
        "message": "Which slash commands do you have? (try /weather Karachi in a channel)",
    },
]


def title_for(question: str) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= 60 else flat[:59] + "…"


def register(app: AsyncApp, rt: Runtime) -> None:
    assistant = AsyncAssistant()

    async def greet(channel: str, thread_ts: str) -> None:
        await call(rt.slack.chat_postMessage, channel=channel, thread_ts=thread_ts, text=GREETING)
        await call(
            rt.slack.assistant_threads_setSuggestedPrompts,
            channel_id=channel,
            thread_ts=thread_ts,
            prompts=PROMPTS,
            title="Try one of these:",
        )

    async def reply(event: dict[str, Any], team: str, event_id: str | None) -> None:
        channel, thread, ts = event["channel"], event["thread_ts"], event["ts"]
        keys = ([f"event:{event_id}"] if event_id else []) + [f"msg:{channel}:{ts}"]
        turn = Turn(
            team=team,
            channel=channel,
            user=event.get("user", ""),
            text=event.get("text", ""),
            ts=ts,
            thread_ts=thread,
            reply_thread_ts=thread,
            trigger="assistant",
        )
        async with apology_if_database_down(rt, turn):
            if not await rt.db.events.claim(*keys):
                return
            if await rt.db.conversations.find(team, channel, thread) is None:
                question = clean_text(event.get("text", ""), rt.bot_user_id)
                await call(
                    rt.slack.assistant_threads_setTitle,
                    channel_id=channel,
                    thread_ts=thread,
                    title=title_for(question or "New conversation"),
                )
            await take_turn(rt, turn)

    @assistant.thread_started
    async def on_started(payload: dict[str, Any]) -> None:
        thread = payload["assistant_thread"]
        rt.tasks.spawn(greet(thread["channel_id"], thread["thread_ts"]), name="assistant greeting")

    @assistant.user_message
    async def on_user_message(payload: dict[str, Any], body: dict[str, Any]) -> None:
        if payload.get("subtype") or payload.get("bot_id"):
            return
        team = body.get("team_id") or payload.get("team") or "T0"
        rt.tasks.spawn(reply(payload, team, body.get("event_id")), name=f"assistant {payload.get('ts')}")

    app.use(assistant)
