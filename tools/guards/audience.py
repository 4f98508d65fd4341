"""Who may see content read from a channel, and whether a place's audience stays inside that.

The rule: content read from a channel is shown only to people who can read that channel. The
audience of the place where a result appears (a channel's members, a DM's user, or one person
for an ephemeral message) must be a subset of the source's readers. A public channel of the
workspace is readable by all of the workspace's own people (and its audience is all of them);
a Slack Connect channel and people from other organisations count as members of nothing else.

Membership comes from conversations.info and paginated conversations.members, cached briefly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class ChannelFacts:
    """What the audience rule needs to know about one conversation."""

    id: str
    name: str
    is_public: bool  # a public channel of this workspace, not shared outside it
    is_external: bool  # Slack Connect: people of other organisations may be in it
    is_im: bool
    members: frozenset[str]  # people in it (the bot included, if it is)
    im_user: str | None = None

    @property
    def label(self) -> str:
        return "this DM" if self.is_im else f"#{self.name}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""  # why not, worded for the person who asked


class MembershipCache:
    """conversations.info/members and users.info answers, kept `ttl` seconds (0 keeps nothing)."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._channels: dict[str, tuple[float, ChannelFacts]] = {}
        self._users: dict[str, tuple[float, str | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, channel_id: str | None = None) -> None:
        """Drop cached answers (one channel's, or all) after a membership change we know of."""
        if channel_id is None:
            self._channels.clear()
            self._users.clear()
        else:
            self._channels.pop(channel_id, None)

    async def channel(self, slack: Any, channel_id: str) -> ChannelFacts:
        """Raises SlackApiError when Slack will not tell (e.g. the bot is not in a private channel)."""
        hit = self._channels.get(channel_id)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        async with self._locks.setdefault(channel_id, asyncio.Lock()):  # one lookup per channel
            hit = self._channels.get(channel_id)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            facts = await _fetch_channel(slack, channel_id)
            self._channels[channel_id] = (time.monotonic(), facts)
            return facts

    async def home_team(self, slack: Any, user_id: str) -> str | None:
        """The user's own team id (None if Slack does not know the user)."""
        hit = self._users.get(user_id)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            user = (await slack.users_info(user=user_id))["user"]
            team = None if user.get("is_stranger") else user.get("team_id")
        except SlackApiError:
            team = None
        self._users[user_id] = (time.monotonic(), team)
        return team


async def _fetch_channel(slack: Any, channel_id: str) -> ChannelFacts:
    info = (await slack.conversations_info(channel=channel_id))["channel"]
    members: list[str] = []
    cursor = None
    while True:
        page = await slack.conversations_members(channel=channel_id, limit=1000, cursor=cursor)
        members += page["members"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    external = bool(info.get("is_ext_shared") or info.get("is_pending_ext_shared"))
    private = bool(info.get("is_private") or info.get("is_im") or info.get("is_mpim") or info.get("is_group"))
    return ChannelFacts(
        id=channel_id,
        name=info.get("name") or channel_id,
        is_public=not private and not external,
        is_external=external,
        is_im=bool(info.get("is_im")),
        members=frozenset(members) | ({info["user"]} if info.get("user") else set()),
        im_user=info.get("user"),
    )


async def may_show(
    slack: Any,
    cache: MembershipCache,
    *,
    team: str | None,
    source: str,
    place: str | None,
    ephemeral_to: str | None = None,
    bot_user: str | None = None,
) -> Verdict:
    """May content read from channel `source` appear in `place` (or only to `ephemeral_to`)?"""
    src = await cache.channel(slack, source)
    if ephemeral_to is not None:
        return await _person_may_read(slack, cache, src, ephemeral_to, team)
    if place is None:
        return Verdict(False, "I don't know where the result would be shown")
    if place == source:
        return Verdict(True)  # shown in the channel itself
    try:
        dest = await cache.channel(slack, place)
    except SlackApiError:
        return Verdict(
            False, f"I can't tell who can read the place this would be shown in, so {src.label} stays"
        )
    if dest.is_im and dest.im_user:
        return await _person_may_read(slack, cache, src, dest.im_user, team)
    if dest.is_external:
        return Verdict(
            False,
            f"{dest.label} is shared with another organisation, "
            f"so content from {src.label} can't be shown there",
        )
    if dest.is_public:
        if src.is_public:
            return Verdict(True)
        return Verdict(
            False,
            f"{src.label} is private and {dest.label} is readable by everyone in the workspace. "
            f"Ask me in {src.label} or in a DM instead",
        )
    outsiders = sorted(u for u in dest.members - src.members if u != bot_user)
    if src.is_public and outsiders:
        # Everyone of this workspace may read a public channel: only guests from elsewhere can't.
        foreign = [u for u in outsiders if team is None or await cache.home_team(slack, u) != team]
        outsiders = foreign
    if outsiders:
        return Verdict(
            False,
            f"{len(outsiders)} member(s) of {dest.label} can't read {src.label}, "
            "so its content can't be shown there",
        )
    return Verdict(True)


async def may_read(
    slack: Any, cache: MembershipCache, *, team: str | None, source: str, user: str
) -> Verdict:
    """May `user` read channel `source`? Unknown channels (the bot was removed) count as no."""
    try:
        src = await cache.channel(slack, source)
    except SlackApiError:
        return Verdict(False, "I can no longer see that channel")
    return await _person_may_read(slack, cache, src, user, team)


async def _person_may_read(
    slack: Any, cache: MembershipCache, src: ChannelFacts, user: str, team: str | None
) -> Verdict:
    if user in src.members:
        return Verdict(True)
    if src.is_public and team is not None and await cache.home_team(slack, user) == team:
        return Verdict(True)
    return Verdict(False, f"<@{user}> is not a member of {src.label}")
