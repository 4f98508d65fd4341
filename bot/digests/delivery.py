"""A digest in Slack: posted with metadata naming its (schedule, fire time), and found again.

Slack is the only witness of whether a post happened: a process can die after Slack accepted
the digest and before the database heard. So every part carries message metadata, and a
process that takes a fire time over looks in the target channel first. The metadata that says
"this digest is posted" is on the LAST part only; earlier parts of a long digest carry the
part event type, so an unfinished post's parts can be found and deleted before posting again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.db.models import DigestSchedule
from bot.slack.output.calls import call
from bot.slack.output.render import markdown_messages
from bot.slack.output.safe_text import readable
from tools.toolkit.errors import InvariantError

log = logging.getLogger(__name__)

EVENT_TYPE = "switchboard_digest"  # on the last part: the whole digest is in the channel
PART_EVENT_TYPE = "switchboard_digest_part"  # on the parts before it
LOOKBACK = timedelta(minutes=5)  # our clock and Slack's may disagree; a digest is posted after its fire time


def utc(moment: datetime) -> datetime:
    """Aware UTC, whichever way the database returned it (SQLite and Postgres give naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fire_id(fire_time: datetime) -> str:
    return utc(fire_time).isoformat()


def metadata(schedule_id: int, fire_time: datetime, *, last: bool = True) -> dict[str, Any]:
    return {
        "event_type": EVENT_TYPE if last else PART_EVENT_TYPE,
        "event_payload": {"digest": schedule_id, "fire": fire_id(fire_time)},
    }


def span(since: datetime, until: datetime, timezone: str) -> str:
    """The period a digest covers, in the schedule's zone."""
    zone = ZoneInfo(timezone)
    a, b = since.astimezone(zone), until.astimezone(zone)
    return f"{a:%a %d %b %H:%M} – {b:%a %d %b %H:%M} ({timezone})"


def footer(schedule: DigestSchedule) -> dict[str, Any]:
    text = f"digest {schedule.id} · {schedule.description} ({schedule.timezone})"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


async def post_digest(
    client: AsyncWebClient, schedule: DigestSchedule, text: str, fire_time: datetime, *, unfurl: bool = False
) -> list[str]:
    """Post the parts in order (render's splitting and defusing, people by name), each with its
    metadata; links unfurl only when `unfurl` (SLACK_UNFURL_LINKS, both channels public)."""
    if schedule.id is None:
        raise InvariantError("a stored digest schedule has no id")
    messages = markdown_messages(await readable(client, text), [footer(schedule)])
    stamps = []
    for i, message in enumerate(messages):
        response = await call(
            client.chat_postMessage,
            channel=schedule.channel_id,
            metadata=metadata(schedule.id, fire_time, last=i == len(messages) - 1),
            unfurl_links=unfurl,
            unfurl_media=unfurl,
            **message,
        )
        stamps.append(response["ts"])
    return stamps


@dataclass
class InSlack:
    """What the target channel shows of one (schedule, fire time)."""

    posted: bool = False  # its last part is there
    parts: list[str] = field(default_factory=list)  # ts of earlier parts (orphans unless posted)


async def find_digest(
    client: AsyncWebClient, channel: str, schedule_id: int, fire_time: datetime, bot_user: str | None
) -> InSlack:
    """Look through the channel since the fire time for this digest's metadata.

    Slack errors propagate: when we cannot look, we cannot know it was not posted.
    """
    wanted = {"digest": schedule_id, "fire": fire_id(fire_time)}
    found = InSlack()
    cursor: str | None = None
    while True:
        page = await call(
            client.conversations_history,
            channel=channel,
            oldest=f"{(utc(fire_time) - LOOKBACK).timestamp():.6f}",
            include_all_metadata=True,  # without it Slack shows only metadata of the calling app
            limit=200,
            **({"cursor": cursor} if cursor else {}),
        )
        for message in page.get("messages") or []:
            meta = message.get("metadata") or {}
            if bot_user is not None and message.get("user") != bot_user:
                continue  # only our own posts count, whatever another app writes
            payload = meta.get("event_payload") or {}
            if {key: payload.get(key) for key in wanted} != wanted:
                continue  # (the payload also carries the post's own id: bot/slack/output/calls.py)
            if meta.get("event_type") == EVENT_TYPE:
                found.posted = True
            elif meta.get("event_type") == PART_EVENT_TYPE:
                found.parts.append(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return found


async def delete_parts(client: AsyncWebClient, channel: str, stamps: list[str]) -> None:
    """Remove the parts an interrupted post left behind; one that will not go is only logged."""
    for ts in stamps:
        try:
            await call(client.chat_delete, channel=channel, ts=ts)
        except SlackApiError as exc:
            log.warning("could not delete orphan digest part %s in %s: %s", ts, channel, exc)
