"""The statements and transactions the database runs, counted for /metrics (what an answer costs).

Imported once by bot/db/database.py. The listeners sit on the Engine and Pool classes, so every
engine of the process is counted however it was made. Statements are counted where they run:
on PostgreSQL at SQLAlchemy's cursor event; on SQLite by SQLite's own trace hook, because the
run and step writer (bot/db/queries/runs.py) talks to aiosqlite below SQLAlchemy and would go unseen.
A write on an autocommit connection is a transaction of its own, counted as `autocommit`; a
transaction our code opens is counted at its begin and at its commit or rollback.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.util import await_

from bot.ops.metrics import DB_STATEMENTS, DB_TRANSACTIONS

KINDS = ("select", "insert", "update", "delete")
WRITES = frozenset(("insert", "update", "delete"))
# Statements that open or end transactions: SQLite's trace shows the ones pysqlite sends by
# itself, which the transaction events below already count.
CONTROL = frozenset(("begin", "commit", "rollback", "savepoint", "release", "end"))

_statements = {kind: DB_STATEMENTS.labels(kind=kind) for kind in (*KINDS, "other")}
_transactions = {
    name: DB_TRANSACTIONS.labels(event=name) for name in ("begin", "commit", "rollback", "autocommit")
}


def kind_of(sql: str) -> str:
    """The statement's first keyword if it is one we count apart, else "other"."""
    head = sql[:24].lstrip(" \t\r\n(").split(None, 1)  # SQLite's trace shows the values: read little
    word = head[0].lower() if head else ""
    return word if word in WRITES or word == "select" or word in CONTROL else "other"


def count_statement(sql: str, autocommit: bool) -> None:
    kind = kind_of(sql)
    if kind in CONTROL:
        return
    _statements[kind].inc()
    if autocommit and kind in WRITES:
        _transactions["autocommit"].inc()


# An execution option of SQLite's read connections (bot/db/database.py `Database.reading`): pysqlite
# begins no transaction for a SELECT, so their reads are each their own, as in autocommit.
READS_ONLY = "switchboard_reads_only"


def _autocommit(conn: Connection) -> bool:
    options = conn.get_execution_options()
    return options.get("isolation_level") == "AUTOCOMMIT" or bool(options.get(READS_ONLY))


@event.listens_for(Engine, "before_cursor_execute")
def _statement(
    conn: Connection, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    if conn.dialect.name != "sqlite":  # there SQLite's trace counts it (see _trace_sqlite)
        count_statement(statement, _autocommit(conn))


def _transaction_listener(name: str) -> Callable[[Connection], None]:
    counter = _transactions[name]

    def listener(conn: Connection) -> None:
        if not _autocommit(conn):  # an autocommit connection's begin and commit do nothing
            counter.inc()

    return listener


for _name in ("begin", "commit", "rollback"):
    event.listen(Engine, _name, _transaction_listener(_name))


# What our own BEGIN IMMEDIATE, COMMIT and ROLLBACK (bot/db/locks.py) count as.
EXPLICIT = {"begin": "begin", "commit": "commit", "end": "commit", "rollback": "rollback"}


def _tracer(conn: aiosqlite.Connection) -> Callable[[str], None]:
    """SQLite calls this (on the connection's own thread) before each statement it runs."""
    ref = weakref.ref(conn)

    def trace(sql: str) -> None:
        live = ref()
        if live is not None and live.isolation_level is None and (event := EXPLICIT.get(kind_of(sql))):
            # In autocommit mode pysqlite begins nothing itself: a BEGIN here is our code's own
            # transaction (a claim, a cap's count-then-write), which no SQLAlchemy event sees.
            _transactions[event].inc()
            return
        count_statement(sql, live is not None and not live.in_transaction)

    return trace


@event.listens_for(Pool, "connect")
def _trace_sqlite(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
    driver = record.driver_connection
    if isinstance(driver, aiosqlite.Connection):
        await_(driver.set_trace_callback(_tracer(driver)))
