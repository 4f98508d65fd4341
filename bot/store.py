"""Tables and the queries the bot needs; the only module that speaks SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import UniqueConstraint, event, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Field, SQLModel, col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession


def utcnow() -> datetime:
    return datetime.now(UTC)


class ProcessedEvent(SQLModel, table=True):
    """A Slack delivery (event id or message key) already handled; the unique key stops replays."""

    key: str = Field(primary_key=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)
    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """One chat message in a conversation, in the shape the Chat Completions API wants back."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    run_id: int | None = Field(default=None, index=True)
    role: str = Field(max_length=16)  # user | assistant | tool
    content: str | None = None
    tool_calls: str | None = None  # JSON list of {id, type, function: {name, arguments}}
    tool_call_id: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, max_length=32)
    slack_ts: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    """One orchestration: what triggered it, how it ended, what it cost."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int | None = Field(default=None, index=True)
    trigger: str = Field(max_length=40)  # mention | dm | thread | assistant | /weather | digest
    status: str = Field(default="running", max_length=16)  # running ok limited failed interrupted
    team_id: str | None = Field(default=None, max_length=32)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    user_id: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=100)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    answer_ts: str | None = Field(default=None, max_length=32)
    error: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    duration_ms: float | None = None


class Step(SQLModel, table=True):
    """One traced step of a run: a model call, a tool call or a workflow stage."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=100)
    arguments: str | None = None
    output_chars: int = 0
    error: str | None = None
    duration_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    user_id: str = Field(max_length=32)
    value: str = Field(max_length=16)  # good | bad
    created_at: datetime = Field(default_factory=utcnow)


class Store:
    """Async access to the database; one per process, shared by every listener."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started: set[int] = set()  # runs this process started (to interrupt at shutdown)
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                url, connect_args={"timeout": 30}, pool_pre_ping=False
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        import bot.digest_store  # noqa: F401  (registers the digest tables)

        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- deliveries -------------------------------------------------------------------------
    async def claim(self, *keys: str) -> bool:
        """Record deliveries as handled; False when any key was seen before (a replay)."""
        async with self.session() as s:
            for key in keys:
                s.add(ProcessedEvent(key=key))
            try:
                await s.commit()
            except IntegrityError:
                return False
        return True

    # --- conversations ----------------------------------------------------------------------
    async def conversation(self, team: str, channel: str, thread_ts: str) -> Conversation | None:
        async with self.session() as s:
            q = select(Conversation).where(
                Conversation.team_id == team,
                Conversation.channel_id == channel,
                Conversation.thread_ts == thread_ts,
            )
            return (await s.exec(q)).first()

    async def get_or_create_conversation(self, team: str, channel: str, thread_ts: str) -> Conversation:
        found = await self.conversation(team, channel, thread_ts)
        if found:
            return found
        async with self.session() as s:
            convo = Conversation(team_id=team, channel_id=channel, thread_ts=thread_ts)
            s.add(convo)
            try:
                await s.commit()
                return convo
            except IntegrityError:  # created concurrently by another delivery
                await s.rollback()
        found = await self.conversation(team, channel, thread_ts)
        assert found is not None
        return found

    async def add_messages(self, conversation_id: int, messages: list[dict[str, Any]], **extra: Any) -> None:
        """Append Chat Completions-shaped messages (user, assistant with tool calls, tool)."""
        async with self.session() as s:
            for m in messages:
                calls = m.get("tool_calls")
                s.add(
                    Message(
                        conversation_id=conversation_id,
                        role=m["role"],
                        content=m.get("content"),
                        tool_calls=json.dumps(calls) if calls else None,
                        tool_call_id=m.get("tool_call_id"),
                        **extra,
                    )
                )
            await s.exec(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(updated_at=utcnow())
            )
            await s.commit()

    async def history(self, conversation_id: int, limit: int = 400) -> list[dict[str, Any]]:
        """The newest `limit` messages of one conversation, oldest first, in API shape."""
        async with self.session() as s:
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
            out.append(m)
        return out

    # --- runs -------------------------------------------------------------------------------
    async def start_run(self, trigger: str, **fields: Any) -> Run:
        async with self.session() as s:
            run = Run(trigger=trigger, **fields)
            s.add(run)
            await s.commit()
        assert run.id is not None
        self.started.add(run.id)
        return run

    async def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        self.started.discard(run_id)
        async with self.session() as s:
            run = await s.get(Run, run_id)
            if run is None:
                return
            run.status = status
            run.finished_at = utcnow()
            run.duration_ms = (run.finished_at - run.started_at).total_seconds() * 1000
            for k, v in fields.items():
                setattr(run, k, v)
            s.add(run)
            await s.commit()

    async def update_run(self, run_id: int, **fields: Any) -> None:
        async with self.session() as s:
            await s.exec(update(Run).where(col(Run.id) == run_id).values(**fields))
            await s.commit()

    async def get_run(self, run_id: int) -> Run | None:
        async with self.session() as s:
            return await s.get(Run, run_id)

    async def interrupt_running(self, error: str = "interrupted by shutdown") -> int:
        """Mark this process's runs still in flight as interrupted (other processes share the db)."""
        if not self.started:
            return 0
        async with self.session() as s:
            result = await s.exec(
                update(Run)
                .where(col(Run.status) == "running", col(Run.id).in_(self.started))
                .values(status="interrupted", error=error, finished_at=utcnow())
            )
            await s.commit()
            return result.rowcount or 0

    async def add_step(self, run_id: int, **fields: Any) -> None:
        async with self.session() as s:
            s.add(Step(run_id=run_id, **fields))
            await s.commit()

    async def steps(self, run_id: int) -> list[Step]:
        async with self.session() as s:
            q = select(Step).where(Step.run_id == run_id).order_by(col(Step.id))
            return list((await s.exec(q)).all())

    async def runs(self, **where: Any) -> list[Run]:
        async with self.session() as s:
            q = select(Run).order_by(col(Run.id))
            for k, v in where.items():
                q = q.where(getattr(Run, k) == v)
            return list((await s.exec(q)).all())

    async def count(self, table: type[SQLModel]) -> int:
        async with self.session() as s:
            return (await s.exec(select(func.count()).select_from(table))).one()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout waits instead of failing on a lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


async def save_feedback(store: Store, run_id: int, user_id: str, value: str) -> bool:
    """One rating per (run, user): a second click changes it. False when the run is unknown."""
    async with store.session() as s:
        if await s.get(Run, run_id) is None:
            return False
        found = (
            await s.exec(select(Feedback).where(Feedback.run_id == run_id, Feedback.user_id == user_id))
        ).first()
        if found is None:
            s.add(Feedback(run_id=run_id, user_id=user_id, value=value))
        else:
            found.value, found.created_at = value, utcnow()
            s.add(found)
        await s.commit()
        return True


async def feedback_for(store: Store, run_id: int) -> list[Feedback]:
    async with store.session() as s:
        return list((await s.exec(select(Feedback).where(Feedback.run_id == run_id))).all())
