"""The state behind the fake Slack Web API: users, channels, messages, threads, Slack's limits.

Kept apart from the HTTP layer (slack_api.py) so tests and benchmarks can seed and inspect a
workspace directly. Top-level messages stay sorted by ts, so range queries are bisections and a
50,000-message channel costs nothing extra.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload
from zoneinfo import ZoneInfo

BOT_USER, BOT_ID, TEAM, APP_ID = "UBOT", "BBOT", "T1", "A1"
TEXT_LIMIT = 40_000  # chat.postMessage `text` (msg_too_long)
MARKDOWN_LIMIT = 12_000  # `markdown_text` and a `markdown` block's text
BLOCK_LIMIT = 50
PROMPT_LIMIT = 4  # assistant.threads.setSuggestedPrompts


class SlackFault(Exception):
    """An `ok: false` answer with this error code (and optional detail for response_metadata)."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error, self.detail = error, detail


def ts_key(message: dict[str, Any]) -> float:
    # Doubles near 1.7e9 are spaced ~2.4e-7 apart, so microsecond stamps stay distinct and ordered.
    return float(message["ts"])


@dataclass
class Channel:
    id: str
    name: str
    members: set[str]
    is_private: bool = False
    is_im: bool = False
    is_ext_shared: bool = False  # Slack Connect: shared with another organisation
    refuses: str | None = None  # every write here answers this error (is_archived, restricted_action, ...)
    messages: list[dict[str, Any]] = field(default_factory=list)  # top level, oldest first
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # parent ts -> replies

    def top_level(self, ts: str) -> dict[str, Any] | None:
        i = bisect.bisect_left(self.messages, float(ts), key=ts_key)
        if i < len(self.messages) and self.messages[i]["ts"] == ts:
            return self.messages[i]
        return None

    def find(self, ts: str) -> dict[str, Any] | None:
        found = self.top_level(ts)
        if found is None:
            found = next((r for rs in self.replies.values() for r in rs if r["ts"] == ts), None)
        return found

    def bounds(self, oldest: float, latest: float, inclusive: bool) -> tuple[int, int]:
        """Index range of top-level messages between oldest and latest (exclusive unless asked)."""
        if inclusive:
            return (
                bisect.bisect_left(self.messages, oldest, key=ts_key),
                bisect.bisect_right(self.messages, latest, key=ts_key),
            )
        return (
            bisect.bisect_right(self.messages, oldest, key=ts_key),
            bisect.bisect_left(self.messages, latest, key=ts_key),
        )


class NewestFirst(Sequence[dict[str, Any]]):
    """messages[lo:hi] reversed, without copying: a history page costs its size, not the channel's."""

    def __init__(self, messages: list[dict[str, Any]], lo: int, hi: int) -> None:
        self.messages, self.lo, self.hi = messages, lo, max(lo, hi)

    def __len__(self) -> int:
        return self.hi - self.lo

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.messages[self.hi - 1 - (i % len(self))]


class Workspace:
    """Team T1 with the bot user UBOT (bot_id BBOT); channels hold messages like Slack's."""

    def __init__(self) -> None:
        self.team = TEAM
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.bot_posts: list[tuple[Channel, dict[str, Any]]] = []  # what posted() reads
        self._clock = 0.0
        self.add_user(BOT_USER, "switchboard", is_bot=True)

    # --- setup --------------------------------------------------------------------------------
    def add_user(
        self,
        id: str,
        name: str,
        tz: str = "UTC",
        is_admin: bool = False,
        is_bot: bool = False,
        team: str | None = None,
    ) -> dict[str, Any]:
        """A user of this workspace, or of another organisation when `team` is another team id."""
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
        self.users[id] = {
            "id": id,
            "team_id": team or self.team,
            "name": name,
            "real_name": name.title(),
            "tz": tz,
            "tz_label": tz,
            "tz_offset": int(offset.total_seconds()) if offset else 0,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "is_stranger": bool(team and team != self.team),
            "deleted": False,
            "profile": {"display_name": name, "real_name": name.title()},
        }
        return self.users[id]

    def add_channel(
        self,
        id: str,
        name: str,
        members: Iterable[str] = (),
        is_private: bool = False,
        is_im: bool = False,
        bot_member: bool = True,
        is_ext_shared: bool = False,
    ) -> Channel:
        people = set(members) | ({BOT_USER} if bot_member else set())
        self.channels[id] = Channel(id, name, people, is_private, is_im, is_ext_shared)
        return self.channels[id]

    def next_ts(self) -> str:
        """A fresh, strictly increasing message timestamp from the wall clock, as Slack's are:
        the bot may look its own posts up in a window of time (bot/slack/output/calls.py)."""
        self._clock = round(max(time.time(), self._clock + 0.000001), 6)
        return f"{self._clock:.6f}"

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> str:
        """Store a message from `user` (a reply when thread_ts is another message's ts); returns ts."""
        ts = ts or self.next_ts()
        self.store(
            self.channels[channel],
            {"type": "message", "user": user, "text": text, "ts": ts, **extra},
            thread_ts,
        )
        return ts

    def seed_messages(
        self,
        channel: str,
        n: int,
        users: Sequence[str] = ("U1", "U2"),
        start_ts: float = 1_600_000_000.0,
        step: float = 60.0,
        text: str = "message number {i} about the project",
    ) -> list[str]:
        """n top-level messages, `step` seconds apart; one append and one sort, so 50k is instant."""
        ch = self.channels[channel]
        stamps = [f"{start_ts + i * step:.6f}" for i in range(n)]
        ch.messages.extend(
            {"type": "message", "user": users[i % len(users)], "text": text.format(i=i), "ts": ts}
            for i, ts in enumerate(stamps)
        )
        ch.messages.sort(key=ts_key)
        return stamps

    def seed_replies(
        self, channel: str, thread_ts: str, n: int, users: Sequence[str] = ("U1", "U2"), step: float = 1.0
    ) -> list[str]:
        """n replies to `thread_ts`, `step` seconds apart, "reply number {i}"; as fast as seed_messages."""
        ch = self.channels[channel]
        stamps = [f"{float(thread_ts) + (i + 1) * step:.6f}" for i in range(n)]
        thread = ch.replies.setdefault(thread_ts, [])
        thread.extend(
            {"type": "message", "user": users[i % len(users)], "text": f"reply number {i}", "ts": ts,
             "thread_ts": thread_ts}
            for i, ts in enumerate(stamps)
        )  # fmt: skip
        thread.sort(key=ts_key)
        parent = ch.top_level(thread_ts)
        if parent is not None:
            parent |= {"thread_ts": thread_ts, "reply_count": len(thread), "latest_reply": thread[-1]["ts"]}
            parent["reply_users"] = sorted(set(users))
        return stamps

    def store(self, ch: Channel, msg: dict[str, Any], thread_ts: str | None = None) -> dict[str, Any]:
        if thread_ts and thread_ts != msg["ts"]:
            msg["thread_ts"] = thread_ts
            thread = ch.replies.setdefault(thread_ts, [])
            bisect.insort(thread, msg, key=ts_key)
            parent = ch.top_level(thread_ts)
            if parent is not None:
                who = parent.setdefault("reply_users", [])
                if msg.get("user") and msg["user"] not in who:
                    who.append(msg["user"])
                parent |= {
                    "thread_ts": thread_ts,
                    "reply_count": len(thread),
                    "latest_reply": thread[-1]["ts"],
                }
        else:
            bisect.insort(ch.messages, msg, key=ts_key)
        if msg.get("bot_id") == BOT_ID:
            self.bot_posts.append((ch, msg))
        return msg

    def remove(self, ch: Channel, msg: dict[str, Any]) -> None:
        for bucket in [ch.messages, *ch.replies.values()]:
            if any(m is msg for m in bucket):
                bucket[:] = [m for m in bucket if m is not msg]
        self.bot_posts = [(c, m) for c, m in self.bot_posts if m is not msg]

    # --- access rules, as the bot sees them --------------------------------------------------
    def channel_for(self, p: dict[str, Any], key: str = "channel") -> Channel:
        """The channel by id (or #name); private channels the bot is not in do not exist for it."""
        ref = str(p.get(key) or "")
        ch = self.channels.get(ref) or next(
            (c for c in self.channels.values() if c.name == ref.lstrip("#")), None
        )
        if ch is None or (ch.is_private and BOT_USER not in ch.members):
            raise SlackFault("channel_not_found")
        return ch

    def member_channel(self, p: dict[str, Any], key: str = "channel") -> Channel:
        ch = self.channel_for(p, key)
        if BOT_USER not in ch.members:
            raise SlackFault("not_in_channel")
        return ch

    def writable_channel(self, p: dict[str, Any], *, member: bool = True) -> Channel:
        """A channel the bot may write in; one that refuses every write (refuse_writes) says why."""
        ch = self.member_channel(p) if member else self.channel_for(p)
        if ch.refuses:
            raise SlackFault(ch.refuses)
        return ch

    def refuse_writes(self, channel: str, error: str) -> None:
        """From now on every write to `channel` is refused with `error`, as Slack refuses writes to
        an archived channel (is_archived) or one a workspace policy closes (restricted_action)."""
        self.channels[channel].refuses = error

    def own_message(self, ch: Channel, ts: str, verb: str) -> dict[str, Any]:
        msg = ch.find(ts)
        if msg is None:
            raise SlackFault("message_not_found")
        if msg.get("bot_id") != BOT_ID:
            raise SlackFault(f"cant_{verb}_message")
        return msg

    def bot_message(self, p: dict[str, Any], ts: str) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team,
            "ts": ts,
            "text": p.get("text") or p.get("markdown_text") or "",
            "blocks": p.get("blocks"),
        }
        for key in ("markdown_text", "metadata"):
            if p.get(key):
                msg[key] = p[key]
        return msg

    # --- inspection ---------------------------------------------------------------------------
    def find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return self.channels[channel].find(ts)

    def posted(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot posted (oldest first), as stored now: updates and streams applied."""
        out = [
            m
            for ch, m in self.bot_posts
            if (channel is None or ch.id == channel)
            and (thread_ts is None or m.get("thread_ts") == thread_ts)
        ]
        return sorted(out, key=ts_key)


def check_content(p: dict[str, Any]) -> None:
    """Slack's size limits for text, markdown_text and blocks, in the order Slack reports them."""
    text, markdown, blocks = p.get("text") or "", p.get("markdown_text") or "", p.get("blocks") or []
    if len(text) > TEXT_LIMIT:
        raise SlackFault("msg_too_long")
    if len(markdown) > MARKDOWN_LIMIT:
        raise SlackFault(
            "invalid_arguments", f"[ERROR] markdown_text must be at most {MARKDOWN_LIMIT} characters"
        )
    if not isinstance(blocks, list) or len(blocks) > BLOCK_LIMIT:
        raise SlackFault(
            "invalid_blocks", f"[ERROR] no more than {BLOCK_LIMIT} items allowed [json-pointer:/blocks]"
        )
    for i, block in enumerate(blocks):
        if block.get("type") == "markdown" and len(block.get("text", "")) > MARKDOWN_LIMIT:
            raise SlackFault(
                "invalid_blocks",
                f"[ERROR] must be at most {MARKDOWN_LIMIT} characters [json-pointer:/blocks/{i}/text]",
            )
    if not (text or markdown or blocks):
        raise SlackFault("no_text")
