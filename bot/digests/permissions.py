"""Who may do what with a digest, and whether a schedule may still post.

A digest reads one channel and posts in another, so it follows the audience rule
(tools/guards/audience.py) when it is added, every time it fires, and on `/digest run`; its creator must
still be a member of the source. Only the creator or a workspace admin may remove or run one.
Ordinary members get at most MAX_PER_CHANNEL schedules per channel, at least an hour apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.db.models import DigestSchedule
from bot.digests.grammar import shortest_gap
from bot.runtime import Runtime
from tools.guards.audience import may_show

MAX_PER_CHANNEL = 10
MIN_INTERVAL = timedelta(hours=1)


async def is_admin(rt: Runtime, user: str) -> bool:
    try:
        info = (await rt.slack.users_info(user=user))["user"]
    except SlackApiError:
        return False
    return bool(info.get("is_admin") or info.get("is_owner") or info.get("is_primary_owner"))


async def may_manage(rt: Runtime, schedule: DigestSchedule, user: str) -> bool:
    return schedule.creator_id == user or await is_admin(rt, user)


async def why_not_post(rt: Runtime, *, team: str, creator: str, source: str, target: str) -> str | None:
    """None when a digest of `source` may be posted in `target` for `creator`; else the reason."""
    try:
        facts = await rt.memberships.channel(rt.slack, source)
    except SlackApiError:
        return f"I can no longer read <#{source}>"
    if creator not in facts.members:
        return f"<@{creator}> is not a member of <#{source}>"
    verdict = await may_show(
        rt.slack, rt.memberships, team=team, source=source, place=target, bot_user=rt.bot_user_id
    )
    return None if verdict.allowed else verdict.reason


def why_not_add(cron: str, timezone: str) -> str | None:
    """How often an ordinary member's schedule may fire (admins are not asked)."""
    gap = shortest_gap(cron, timezone, datetime.now(UTC))
    if gap is not None and gap < MIN_INTERVAL:
        minutes = int(gap.total_seconds() // 60)
        return f"this schedule fires every {minutes} minutes; digests must be at least an hour apart"
    return None


def channel_full(target: str, existing: int) -> str:
    """Why a member may not add another schedule posting in `target`; the count is checked with
    the insert, under one lock (bot/db/workspaces/digest_schedules.py `add`), so concurrent adds
    cannot pass it."""
    return (
        f"<#{target}> already has {existing} digests, the most a member may set up; "
        "remove one first or ask a workspace admin"
    )
