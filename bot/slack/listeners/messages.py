"""Mentions, DMs and thread follow-ups -> the LLM orchestrator. Ack first, answer in a task."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.answering.conversation import Turn, apology_if_database_down
from bot.slack.answering.turns import accept
from bot.slack.door.workspace import event_workspace

log = logging.getLogger(__name__)

DM_MAIN = "main"  # the conversation key of a DM's top level (answers go there, not in a thread)
SLACKBOT = "USLACKBOT"  # Slackbot's notices ("You have been removed from #…") are not questions
# Subtypes that are people talking: a file shared with text, a thread reply also sent to the channel.
HUMAN_SUBTYPES = {None, "file_share", "thread_broadcast"}


def is_from_bot(event: dict[str, Any], bot_user_id: str | None) -> bool:
    return (
        bool(event.get("bot_id") or event.get("bot_profile"))
        or event.get("user") == SLACKBOT
        or (bot_user_id is not None and event.get("user") == bot_user_id)
    )


def is_person_talking(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """A message from a person (not a bot, not Slackbot, not an edit or a join notice)."""
    return (
        event.get("subtype") in HUMAN_SUBTYPES
        and isinstance(event.get("user"), str)
        and bool(event.get("user"))
        and not is_from_bot(event, bot_user_id)
    )


def _files(event: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    files = event.get("files")
    return tuple(f for f in files if isinstance(f, dict)) if isinstance(files, list) else ()


def mention_turn(event: dict[str, Any], team: str) -> Turn:
    root = event.get("thread_ts") or event["ts"]
    return Turn(
        team=team,
        channel=event["channel"],
        user=event.get("user", ""),
        text=event.get("text", ""),
        ts=event["ts"],
        thread_ts=root,
        reply_thread_ts=root,
        trigger="mention",
        files=_files(event),
    )


def message_turn(
    event: dict[str, Any], team: str, bot_user_id: str | None, known_threads: set[str]
) -> Turn | None:
    """Decide whether a `message` event deserves an answer; pure, so it is tested directly.

    `known_threads` holds the thread roots of this channel where the bot has a conversation.
    """
    if not is_person_talking(event, bot_user_id):
        return None
    channel, ts, thread = event.get("channel"), event.get("ts"), event.get("thread_ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return None
    text = event.get("text") if isinstance(event.get("text"), str) else ""
    base: dict[str, Any] = {"team": team, "channel": channel, "user": event["user"], "text": text}
    base["files"] = _files(event)
    if event.get("channel_type") == "im":
        if thread:
            return Turn(**base, ts=ts, thread_ts=thread, reply_thread_ts=thread, trigger="dm")
        return Turn(**base, ts=ts, thread_ts=DM_MAIN, reply_thread_ts=None, trigger="dm")
    if bot_user_id and f"<@{bot_user_id}" in base["text"]:
        return None  # the app_mention event answers this one
    if thread and thread in known_threads:
        return Turn(**base, ts=ts, thread_ts=thread, reply_thread_ts=thread, trigger="thread")
    return None


def register(app: AsyncApp, rt: Runtime) -> None:
    # The app processes before it responds (bot/slack/app.py), so each listener queues its turn
    # in the database before Slack gets the ack: once acked, a message survives any crash. A
    # retried or duplicate delivery finds its turn already queued (bot/slack/answering/turns.py).
    async def start(turn: Turn) -> None:
        async with apology_if_database_down(rt, turn.channel, turn.reply_thread_ts):
            await accept(rt, turn)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        if not is_person_talking(event, rt.bot_user_id) or not event.get("ts") or not event.get("channel"):
            return
        await start(mention_turn(event, event_workspace(body)))

    async def known_threads(team: str, event: dict[str, Any]) -> set[str]:
        thread = event.get("thread_ts")
        if not thread or event.get("channel_type") == "im":
            return set()
        channel = event.get("channel", "")
        if not await rt.db.conversations.find(team, channel, thread):
            return set()
        if not (await rt.db.channel_settings.effective(team, channel)).follow_ups:
            return set()  # only mentions are answered in this channel's threads
        return {thread}

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        if not is_person_talking(event, rt.bot_user_id):
            return
        team = event_workspace(body)
        async with apology_if_database_down(rt, event.get("channel", ""), event.get("thread_ts")):
            turn = message_turn(event, team, rt.bot_user_id, await known_threads(team, event))
        if turn is not None:
            await start(turn)
