"""Issue 22: the database statements and transactions /metrics counts (SQLite, and PostgreSQL on
the suite's second pass).

The counters are the process's, so each test compares the exposition before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bot.db.counting import kind_of
from bot.db.database import Database
from bot.db.models import DigestClaim, utcnow
from bot.ops import metrics


def counts() -> dict[tuple[str, str], float]:
    """The database counters as /metrics shows them: (label value, metric) -> value."""
    payload, _ = metrics.exposition()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(payload.decode()):
        for s in family.samples:
            if s.name in ("switchboard_db_statements_total", "switchboard_db_transactions_total"):
                found[(s.labels.get("kind") or s.labels["event"], s.name)] = s.value
    return found


def delta(before: dict[tuple[str, str], float]) -> dict[str, float]:
    """What changed since `before`, keyed by label value (kinds and events do not overlap)."""
    return {label: value - before.get((label, name), 0.0) for (label, name), value in counts().items()}


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.create_schema()
    yield database
    await database.close()


async def test_a_transaction_is_counted_at_its_begin_and_commit_with_its_statements(db: Database) -> None:
    before = counts()
    assert await db.insert_new([DigestClaim(schedule_id=1, fire_time=utcnow())])  # one INSERT, committed
    d = delta(before)
    assert (d["begin"], d["commit"], d["rollback"], d["autocommit"]) == (1, 1, 0, 0)
    assert (d["insert"], d["select"], d["update"], d["delete"]) == (1, 0, 0, 0)


async def test_a_rolled_back_transaction_is_counted_as_such(db: Database) -> None:
    claim = DigestClaim(schedule_id=2, fire_time=utcnow())
    assert await db.insert_new([claim])
    before = counts()
    assert not await db.insert_new([claim])  # the replay inserts nothing, rolls back
    d = delta(before)
    assert (d["begin"], d["commit"], d["rollback"]) == (1, 0, 1)
    assert d["insert"] == 1


async def test_reads_in_a_session_are_one_transaction(db: Database) -> None:
    before = counts()
    async with db.session() as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        await session.exec(text("SELECT 2"))  # type: ignore[call-overload]
    d = delta(before)
    assert (d["begin"], d["rollback"], d["select"], d["insert"]) == (1, 1, 2, 0)


async def test_trace_writes_are_counted_one_transaction_each(db: Database) -> None:
    """The run writer writes through the pool: the run's start and its finish are a transaction
    each, counted like any other (nothing is written on a connection of its own any more)."""
    await db.runs.start("warmup")
    before = counts()
    run = await db.runs.start("mention")
    await db.runs.finish(run.id, "ok")
    d = delta(before)
    assert d["insert"] == 1 and d["update"] == 1
    assert d["commit"] == 2
    assert d["autocommit"] == 0


def test_statement_kinds() -> None:
    assert kind_of("SELECT 1") == "select"
    assert kind_of("  (select a from t) UNION (select b from u)") == "select"
    assert kind_of('INSERT INTO "run" ("trigger") VALUES (?)') == "insert"
    assert kind_of("update run set status = 'ok'") == "update"
    assert kind_of("DELETE FROM t") == "delete"
    assert kind_of("WITH x AS (SELECT 1) SELECT * FROM x") == "other"
    assert kind_of("BEGIN ") == "begin"
    assert kind_of("COMMIT") == "commit"
    assert kind_of("") == "other"
