"""Conversations (one per thread) and their messages in Chat Completions shape."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select, update

from bot.db.models import Conversation, Message, utcnow

if TYPE_CHECKING:
    from bot.db.engine import Database


MAX_STORED_ARGUMENTS = 8_000  # characters of one tool call's arguments kept in the history
MAX_CALL_ID = 64  # the message.tool_call_id column


def stored_call_id(call_id: str | None) -> str | None:
    """A model-chosen id that fits its column, the same on the call and on its result."""
    if call_id is None or len(call_id) <= MAX_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:40]


def stored_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls as kept in the history: huge arguments replaced by a note (still valid JSON)."""
    out = []
    for call in calls:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments") or ""
        if len(arguments) > MAX_STORED_ARGUMENTS:
            function["arguments"] = json.dumps({"omitted": f"{len(arguments)} characters, not stored"})
        out.append({**call, "id": stored_call_id(call.get("id")), "function": function})
    return out


class Conversations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, team: str, channel: str, thread_ts: str) -> Conversation | None:
        async with self.db.session() as s:
            q = select(Conversation).where(
                Conversation.team_id == team,
                Conversation.channel_id == channel,
                Conversation.thread_ts == thread_ts,
            )
            return (await s.exec(q)).first()

    async def get_or_create(self, team: str, channel: str, thread_ts: str) -> Conversation:
        found = await self.find(team, channel, thread_ts)
        if found:
            return found
        # ON CONFLICT DO NOTHING: another delivery creating it at once is normal, not an ERROR.
        await self.db.insert_new([Conversation(team_id=team, channel_id=channel, thread_ts=thread_ts)])
        found = await self.find(team, channel, thread_ts)
        assert found is not None
        return found

    async def add_messages(
        self,
        conversation_id: int,
        messages: list[dict[str, Any]],
        *,
        sources: Sequence[str] = (),
        **extra: Any,
    ) -> None:
        """Append Chat Completions-shaped messages (user, assistant with tool calls, tool).

        `sources`: the non-public places the run behind these replies had read; every assistant
        message keeps them (a message's own `sources` key wins), so a later turn treats the
        conversation as carrying that content for as long as the reply is in its window.
        """
        async with self.db.session() as s:
            for m in messages:
                calls = m.get("tool_calls")
                own = m.get("sources") or (sources if m["role"] == "assistant" else ())
                s.add(
                    Message(
                        conversation_id=conversation_id,
                        role=m["role"],
                        content=m.get("content"),
                        tool_calls=json.dumps(stored_tool_calls(calls)) if calls else None,
                        tool_call_id=stored_call_id(m.get("tool_call_id")),
                        sources=" ".join(dict.fromkeys(own)) or None,
                        **extra,
                    )
                )
            await s.exec(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(updated_at=utcnow())
            )
            await s.commit()

    async def has_message(self, conversation_id: int, slack_ts: str) -> bool:
        """Whether this Slack message is in the history already (an attempt that died added it)."""
        async with self.db.session() as s:
            q = select(Message.id).where(
                Message.conversation_id == conversation_id, Message.slack_ts == slack_ts
            )
            return (await s.exec(q.limit(1))).first() is not None

    async def history(self, conversation_id: int, limit: int = 400) -> list[dict[str, Any]]:
        """The newest `limit` messages of one conversation, oldest first, in API shape."""
        async with self.db.session() as s:
            q = (
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(col(Message.id).desc())
                .limit(limit)
            )
            rows = list(reversed((await s.exec(q)).all()))
        out: list[dict[str, Any]] = []
        for r in rows:
            m: dict[str, Any] = {"role": r.role, "content": r.content}
            if r.tool_calls:
                m["tool_calls"] = json.loads(r.tool_calls)
            if r.tool_call_id:
                m["tool_call_id"] = r.tool_call_id
            if r.sources:
                m["sources"] = r.sources.split()
            out.append(m)
        return out
