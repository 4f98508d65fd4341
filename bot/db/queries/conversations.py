"""Conversations (one per thread) and their messages in Chat Completions shape."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db.models import Conversation, Message, fit_lengths, utcnow
from tools.toolkit.errors import InvariantError

if TYPE_CHECKING:
    from bot.db.database import Database


CONVERSATIONS = Conversation.__table__  # type: ignore[attr-defined]
MESSAGES = Message.__table__  # type: ignore[attr-defined]
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


def message_rows(
    conversation_id: int, messages: list[dict[str, Any]], sources: Sequence[str] = (), **extra: Any
) -> list[dict[str, Any]]:
    """Rows of Chat Completions-shaped messages. `sources`: the non-public places the run behind
    these replies had read; every assistant message keeps them (a message's own `sources` key
    wins), so a later turn treats the conversation as carrying that content for as long as the
    reply is in its window."""
    now = utcnow()
    rows = []
    for m in messages:
        calls = m.get("tool_calls")
        own = m.get("sources") or (sources if m["role"] == "assistant" else ())
        row = {
            "conversation_id": conversation_id,
            "run_id": None,
            "user_id": None,
            "slack_ts": None,
            "role": m["role"],
            "content": m.get("content"),
            "tool_calls": json.dumps(stored_tool_calls(calls)) if calls else None,
            "tool_call_id": stored_call_id(m.get("tool_call_id")),
            "sources": " ".join(dict.fromkeys(own)) or None,
            "created_at": now,
        }
        rows.append(fit_lengths(MESSAGES, row | extra))
    return rows


class Conversations:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(
        self, team: str, channel: str, thread_ts: str, conn: AsyncConnection | None = None
    ) -> Conversation | None:
        """The thread's conversation, if it has one (on `conn`, a read unit, when given)."""
        q = sa_select(CONVERSATIONS).where(
            CONVERSATIONS.c.team_id == team,
            CONVERSATIONS.c.channel_id == channel,
            CONVERSATIONS.c.thread_ts == thread_ts,
        )
        async with _reading(self.db, conn) as c:
            row = (await c.execute(q)).first()
        return None if row is None else Conversation(**row._mapping)

    async def get_or_create(self, team: str, channel: str, thread_ts: str) -> Conversation:
        found = await self.find(team, channel, thread_ts)
        if found:
            return found
        # ON CONFLICT DO NOTHING: another delivery creating it at once is normal, not an ERROR.
        await self.db.insert_new([Conversation(team_id=team, channel_id=channel, thread_ts=thread_ts)])
        found = await self.find(team, channel, thread_ts)
        if found is None:
            raise InvariantError("a conversation just created is not found")
        return found

    async def create(self, conn: AsyncConnection, team: str, channel: str, thread_ts: str) -> int:
        """The thread's conversation id, made now if it has none, inside the caller's transaction
        (an answer's end writes its conversation with its messages)."""
        key = {"team_id": team, "channel_id": channel, "thread_ts": thread_ts}
        made = await conn.execute(
            self.db.insert_statement(CONVERSATIONS)
            .values(**key, created_at=utcnow(), updated_at=utcnow())
            .on_conflict_do_nothing()
            .returning(CONVERSATIONS.c.id)
        )
        found = made.scalar()
        if found is None:  # there already: made by an earlier turn, or by a delivery just now
            q = sa_select(CONVERSATIONS.c.id).where(*(CONVERSATIONS.c[k] == v for k, v in key.items()))
            found = (await conn.execute(q)).scalar_one()
        return int(found)

    async def add_messages(
        self,
        conversation_id: int,
        messages: list[dict[str, Any]],
        *,
        sources: Sequence[str] = (),
        **extra: Any,
    ) -> None:
        """Append Chat Completions-shaped messages (user, assistant with tool calls, tool), in a
        transaction of their own; `write_messages` does it inside the caller's."""
        async with self.db.engine.begin() as conn:
            await self.write_messages(conn, conversation_id, messages, sources=sources, **extra)

    async def write_messages(
        self,
        conn: AsyncConnection,
        conversation_id: int,
        messages: list[dict[str, Any]],
        *,
        sources: Sequence[str] = (),
        **extra: Any,
    ) -> None:
        """`add_messages` inside the caller's transaction."""
        await self.insert_rows(
            conn, conversation_id, message_rows(conversation_id, messages, sources, **extra)
        )

    async def insert_rows(
        self, conn: AsyncConnection, conversation_id: int, rows: list[dict[str, Any]]
    ) -> None:
        """Rows made by `message_rows` (of one or several calls: one statement), and the
        conversation's last activity."""
        if not rows:
            return
        await conn.execute(sa_insert(MESSAGES), rows)
        await conn.execute(
            sa_update(CONVERSATIONS).where(CONVERSATIONS.c.id == conversation_id).values(updated_at=utcnow())
        )

    async def has_message(
        self, conversation_id: int, slack_ts: str, conn: AsyncConnection | None = None
    ) -> bool:
        """Whether this Slack message is in the history already (an attempt that died added it)."""
        q = sa_select(MESSAGES.c.id).where(
            MESSAGES.c.conversation_id == conversation_id, MESSAGES.c.slack_ts == slack_ts
        )
        async with _reading(self.db, conn) as c:
            return (await c.execute(q.limit(1))).first() is not None

    async def history(
        self, conversation_id: int, limit: int = 400, conn: AsyncConnection | None = None
    ) -> list[dict[str, Any]]:
        """The newest `limit` messages of one conversation, oldest first, in API shape."""
        m = MESSAGES.c
        q = (
            sa_select(m.role, m.content, m.tool_calls, m.tool_call_id, m.sources)
            .where(m.conversation_id == conversation_id)
            .order_by(m.id.desc())
            .limit(limit)
        )
        async with _reading(self.db, conn) as c:
            rows = list(reversed((await c.execute(q)).all()))
        out: list[dict[str, Any]] = []
        for r in rows:
            message: dict[str, Any] = {"role": r.role, "content": r.content}
            if r.tool_calls:
                message["tool_calls"] = json.loads(r.tool_calls)
            if r.tool_call_id:
                message["tool_call_id"] = r.tool_call_id
            if r.sources:
                message["sources"] = r.sources.split()
            out.append(message)
        return out


@asynccontextmanager
async def _reading(db: Database, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    """The caller's read unit, or one of its own."""
    if conn is not None:
        yield conn
        return
    async with db.reading() as own:
        yield own
