"""Every table the bot keeps, in one place, so the schema reads top to bottom."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Conversation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)
    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AssistantContext(SQLModel, table=True):
    """The channel a user is viewing beside an assistant thread ("this channel" in the panel)."""

    # Keyed by workspace: two workspaces may hold the same DM id and thread ts (issue 24).
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)
    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(default="", max_length=32)  # "" for rows saved before workspaces were kept
    channel_id: str = Field(max_length=32)  # the assistant thread's DM
    thread_ts: str = Field(max_length=32)
    viewed_channel_id: str = Field(max_length=32)
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
    sources: str | None = None  # space-separated non-public sources a reply drew on ("slack:C1")
    created_at: datetime = Field(default_factory=utcnow, index=True)


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
    cost_usd: float | None = None  # from MODEL_PRICES; None when the model has no price
    answer_ts: str | None = Field(default=None, max_length=32)
    error: str | None = None
    sources: str | None = None  # space-separated non-public sources the run read ("slack:G1")
    started_at: datetime = Field(default_factory=utcnow, index=True)
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


class DigestSchedule(SQLModel, table=True):
    """A scheduled channel summary; this table, not the scheduler, is the source of truth."""

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    source_channel_id: str = Field(max_length=32)
    cron: str = Field(max_length=100)
    timezone: str = Field(max_length=64)
    description: str = Field(default="", max_length=200)
    quiet: bool = False
    creator_id: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    last_run_at: datetime | None = None
    last_status: str | None = Field(default=None, max_length=16)
    last_error: str | None = None
    failures: int = 0


class DigestClaim(SQLModel, table=True):
    """(schedule, fire time) claimed before posting, so a digest is posted at most once."""

    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"),)
    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = Field(index=True)
    fire_time: datetime
    claimed_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="claimed", max_length=16)


class ChannelSetting(SQLModel, table=True):
    """One setting of a workspace (channel_id "*") or a channel, written by an admin."""

    __table_args__ = (UniqueConstraint("team_id", "channel_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32, index=True)
    channel_id: str = Field(max_length=32)
    key: str = Field(max_length=40)
    value: str
    updated_by: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utcnow)


class SettingChange(SQLModel, table=True):
    """Every change to a setting: who, when, from what to what (None = unset)."""

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32, index=True)
    channel_id: str = Field(max_length=32)
    key: str = Field(max_length=40)
    old_value: str | None = None
    new_value: str | None = None
    user_id: str = Field(max_length=32)
    changed_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    """One piece of durable work (a turn, a slash command, a digest fire time, an approval),
    recorded before Slack's ack and finished once, by whichever process holds its lease.

    `key` dedupes deliveries (the same Slack message again finds its job); jobs with the same
    `queue` run one at a time in id order (a conversation's turns); `person` counts against that
    person's slots. Lease times are Unix seconds (float) so comparisons mean the same everywhere.
    """

    __table_args__ = (Index("ix_job_state_id", "state", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # turn | command | digest | approval
    key: str = Field(max_length=200, unique=True)
    queue: str | None = Field(default=None, max_length=200)
    person: str | None = Field(default=None, max_length=80)
    payload: str  # JSON, what the kind's handler needs
    state: str = Field(default="pending", max_length=16)  # pending running done failed interrupted
    attempts: int = 0  # starts; above 1 a dead owner's attempt is being redone
    owner: str | None = Field(default=None, max_length=200)
    lease_expires: float = 0.0
    progress: str | None = None  # JSON: what an attempt showed (a stream's ts), for a redo to adopt
    created_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None


class Approval(SQLModel, table=True):
    """A question put to one person (e.g. "may this run send data to example.com?") and its answer.

    Kept in the database so a click on any process decides it, and so a parked run could be
    resumed from it. Times are Unix seconds, like Lease.
    """

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    # egress | write (a parked write call: bot/slack/answering/write_approvals.py)
    kind: str = Field(max_length=32)
    summary: str  # what the person is asked, in their words
    detail: str = "{}"  # JSON the asker needs to act on the answer (tool, host, url, sources)
    team_id: str | None = Field(default=None, max_length=32)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    requester_id: str = Field(max_length=32)  # the only person who may decide
    state: str = Field(default="pending", max_length=16)  # pending approved denied expired
    decided_by: str | None = Field(default=None, max_length=32)
    decided_at: float | None = None
    expires_at: float
    created_at: float


class ParkedSettlement(SQLModel, table=True):
    """A parked write call's approval acted on (run, or reported as not run): inserted first, once.

    The unique key makes the outcome happen at most once, whichever process sees the decision.
    """

    approval_id: int = Field(primary_key=True)
    outcome: str = Field(max_length=16)  # approved | denied | expired
    settled_at: datetime = Field(default_factory=utcnow)


class BudgetReservation(SQLModel, table=True):
    """Tokens a run in flight holds against its person's and channel's daily caps.

    Taken under a lock before the run's first model call and deleted when the run ends (its run
    row then carries what it spent), so concurrent runs cannot all spend the same allowance.
    One older than twice AGENT_DEADLINE_SECONDS belongs to a process that died and is not counted.
    """

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=32, index=True)
    user_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    tokens: int
    created_at: datetime = Field(default_factory=utcnow, index=True)


class SlackInstallation(SQLModel, table=True):
    """A workspace (or, for a Grid org-wide install, an org: team_id "") that installed the app
    through /slack/install. The bot token is Fernet-encrypted with SLACK_TOKEN_KEY."""

    __table_args__ = (UniqueConstraint("enterprise_id", "team_id"),)
    id: int | None = Field(default=None, primary_key=True)
    enterprise_id: str = Field(default="", max_length=32)  # "" rather than NULL: NULLs never clash
    team_id: str = Field(default="", max_length=32, index=True)
    is_enterprise_install: bool = False
    app_id: str | None = Field(default=None, max_length=32)
    bot_id: str | None = Field(default=None, max_length=32)
    bot_user_id: str | None = Field(default=None, max_length=32)
    bot_scopes: str = ""
    bot_token: str  # encrypted
    installer_user_id: str | None = Field(default=None, max_length=32)
    installed_at: datetime = Field(default_factory=utcnow)


class OAuthState(SQLModel, table=True):
    """A state handed out by /slack/install; consumed once by /slack/oauth_redirect (CSRF)."""

    state: str = Field(primary_key=True, max_length=64)
    expires_at: float = Field(index=True)  # epoch seconds


class GridWorkspace(SQLModel, table=True):
    """A workspace of an Enterprise Grid org, learned from Slack's requests: work resumed from the
    database knows only its team id, and an org-wide installation is stored by enterprise."""

    team_id: str = Field(primary_key=True, max_length=32)
    enterprise_id: str = Field(max_length=32, index=True)
    seen_at: datetime = Field(default_factory=utcnow)


def fit_lengths(table: Any, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every string longer than its column cut (and logged), for Core writes too.

    SQLite ignores VARCHAR lengths, Postgres refuses the row: without this a long value (a cron
    expression, a model name, a model-chosen id) works in tests and kills the command in production.
    Values are checked where they enter; this is the net under those checks.
    """
    out = dict(values)
    for key, value in values.items():
        column = table.c.get(key)
        length = getattr(column.type, "length", None) if column is not None else None
        if length and isinstance(value, str) and len(value) > length:
            log.warning("%s.%s: %d characters cut to %d", table.name, key, len(value), length)
            out[key] = value[: length - 1] + "…"
    return out


def insert_ignoring(dialect: str, rows: list[SQLModel]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING of table-model rows of one table: a lost race inserts
    nothing (rowcount says how many went in) instead of raising, and the server logs no ERROR."""
    from sqlalchemy.dialects import postgresql, sqlite

    table = type(rows[0]).__table__  # type: ignore[attr-defined]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = [fit_lengths(table, r.model_dump(exclude_none=True)) for r in rows]
    return insert(table).values(values).on_conflict_do_nothing()
