"""Mentions, DMs and thread follow-ups -> the LLM orchestrator. Ack first, answer in a task."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.conversation import Turn, apology_if_database_down
from bot.slack.turns import take_turn

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


def _team(body: dict[str, Any], event: dict[str, Any]) -> str:
    return body.get("team_id") or event.get("team") or "T0"


def register(app: AsyncApp, rt: Runtime) -> None:
    async def claim_and_answer(turn: Turn, keys: list[str]) -> None:
        async with apology_if_database_down(rt, turn.channel, turn.reply_thread_ts):
            if not await rt.db.events.claim(*keys):
                log.info("skipping a repeated delivery of %s", keys[0])
                return
            await take_turn(rt, turn)

    def start(turn: Turn, body: dict[str, Any]) -> None:
        # One key per delivery and one per Slack message: retries and duplicate event types
        # for the same message are claimed in the database before any work happens.
        keys = [f"msg:{turn.channel}:{turn.ts}"]
        if body.get("event_id"):
            keys.insert(0, f"event:{body['event_id']}")
        rt.tasks.spawn(claim_and_answer(turn, keys), name=f"answer {turn.channel}/{turn.ts}")

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        if not is_person_talking(event, rt.bot_user_id) or not event.get("ts") or not event.get("channel"):
            return
        start(mention_turn(event, _team(body, event)), body)

    async def follow_up(event: dict[str, Any], body: dict[str, Any]) -> None:
        team, thread = _team(body, event), event.get("thread_ts")
        known: set[str] = set()
        if thread and event.get("channel_type") != "im":
            channel = event.get("channel", "")
            if await rt.db.conversations.find(team, channel, thread):
                if (await rt.db.channel_settings.effective(team, channel)).follow_ups:
                    known.add(thread)  # else only mentions are answered in this channel's threads
        turn = message_turn(event, team, rt.bot_user_id, known)
        if turn is not None:
            start(turn, body)

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        if not is_person_talking(event, rt.bot_user_id):
            return
        # The thread lookup touches the database: do it after the ack, in a tracked task.
        rt.tasks.spawn(follow_up(event, body), name=f"message {event.get('ts')}")
