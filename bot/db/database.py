"""The database handle: one engine per process, and the query modules hung off it by aggregate."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolProxiedConnection
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import bot.db.counting  # counts every engine's statements and transactions, for /metrics
import bot.db.models  # noqa: F401  (registers every table on SQLModel.metadata)
import bot.db.schema as schema
from bot.db.counting import READS_ONLY
from bot.db.models import fit_lengths, insert_ignoring
from bot.db.patience import IMPATIENT, impatient
from bot.db.queries.approvals import Approvals
from bot.db.queries.assistant_contexts import AssistantContexts
from bot.db.queries.conversations import Conversations
from bot.db.queries.feedback import Feedbacks
from bot.db.queries.parked import ParkedCalls
from bot.db.queries.runs import Runs
from bot.db.queries.usage import UsageQueries
from bot.db.queue.jobs import Jobs
from bot.db.workspaces.digest_schedules import Digests
from bot.db.workspaces.workspace_settings import ChannelSettings
from bot.settings import ConfigError
from tools.toolkit.errors import WorkInterrupted

log = logging.getLogger(__name__)

T = TypeVar("T")
# "The server is not there for us right now": shutting down (57P01 admin, 57P02 crash), starting
# up or in recovery (57P03), idle session timeout (57P05), too many connections (53300), and
# every connection exception (class 08). Redoing the work on a new connection is right for these.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "53300"})
# A transaction the server rolled back so that another could go on: redo it as well.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})
# The front door's own pool (its thread records with one transaction at a time, group-committed;
# the second connection covers a restart's reconnect): on top of DB_POOL_SIZE + DB_MAX_OVERFLOW.
RECORDING_CONNECTIONS = 2
RETRY_SECONDS = 15.0  # how long a transient fault is retried before the work fails


class FaultClock:
    """When a database last gave a transient fault (time.monotonic()): the work engine takes over
    no lapsed lease until a lease's time after it, since the holder could not renew meanwhile.
    One per Database (its pool shares it), not per process: another database's outage says
    nothing about this one's leases."""

    def __init__(self) -> None:
        self.last = float("-inf")

    def now(self) -> None:
        self.last = time.monotonic()


# SQLAlchemy names a pool's logger after its class: ours would log "Pool disposed" at INFO.
logging.getLogger(f"{__name__}.PatientPool").setLevel(logging.WARNING)
# Where an error raised is the database's: its drivers, SQLAlchemy, and our own queries.
DATABASE_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "bot.db")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def asyncpg_options(url: URL) -> tuple[URL, dict[str, Any]]:
    """Translate the libpq options hosted providers put in URLs into asyncpg's connect() arguments.

    asyncpg's connect() takes keyword arguments, and SQLAlchemy passes URL query options through
    as such, so `?sslmode=require` would crash the start with an unexpected-keyword error.
    """
    query = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    args: dict[str, Any] = {}
    server: dict[str, str] = {}
    mode = query.pop("sslmode", None)
    rootcert, cert, key = (
        query.pop("sslrootcert", None),
        query.pop("sslcert", None),
        query.pop("sslkey", None),
    )
    if mode is not None:
        if mode not in SSL_MODES:
            raise ConfigError(f"DATABASE_URL sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}.")
        if mode in ("verify-ca", "verify-full") or cert:
            context = ssl.create_default_context(cafile=rootcert)
            context.check_hostname = mode == "verify-full"
            if cert:
                context.load_cert_chain(cert, key)
            args["ssl"] = context
        else:
            args["ssl"] = mode
    if (timeout := query.pop("connect_timeout", None)) is not None:
        try:
            args["timeout"] = float(timeout)
        except ValueError:
            raise ConfigError(f"DATABASE_URL connect_timeout must be seconds, got {timeout!r}.") from None
    if name := query.pop("application_name", None):
        server["application_name"] = name
    if options := query.pop("options", None):  # "-c key=value -c key2=value2"
        for part in options.replace("-c ", " ").split():
            k, _, v = part.partition("=")
            server[k] = v
    if attrs := query.pop("target_session_attrs", None):
        args["target_session_attrs"] = attrs
    if server:
        args["server_settings"] = server
    passthrough = {"prepared_statement_cache_size"}  # SQLAlchemy's own dialect option
    unknown = sorted(set(query) - passthrough)
    if unknown:
        raise ConfigError(
            f"DATABASE_URL option(s) {', '.join(unknown)} are not supported; supported: sslmode, "
            "sslrootcert, sslcert, sslkey, connect_timeout, application_name, options, "
            "target_session_attrs."
        )
    return url.set(query={k: v for k, v in query.items() if k in passthrough}), args


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the first error in `exc`'s chain that has one (asyncpg: `sqlstate`,
    SQLAlchemy's asyncpg adapter and psycopg: `pgcode`)."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        seen = seen.__cause__ or seen.__context__
    return None


def from_database(exc: BaseException) -> bool:
    """Whether `exc` (or an error in its chain) is the database's, or was raised inside database
    code: a model call's timeout or Slack's reset connection is an OSError too, and is not."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.startswith(DATABASE_MODULES):
            return True
        frame = seen.__traceback__
        while frame is not None:
            if str(frame.tb_frame.f_globals.get("__name__", "")).startswith(DATABASE_MODULES):
                return True
            frame = frame.tb_next
        seen = seen.__cause__ or seen.__context__
    return False


def database_unavailable(exc: BaseException) -> bool:
    """True for "the database did not answer" (down, unreachable, refusing connections, shutting
    down, starting up, out of connection slots), as opposed to a query that failed: those deserve
    a different message. Only faults of the database count: the blame goes to what failed."""
    from sqlalchemy import exc as sa_exc

    if not from_database(exc):
        return False
    code = sqlstate(exc)
    if code is not None and (code in UNAVAILABLE_SQLSTATES or code.startswith("08")):
        return True
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen,
            sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError | sa_exc.DisconnectionError,
        ):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, OSError | TimeoutError | ConnectionError):
            return True
        if type(seen).__module__.startswith("asyncpg") and "connect" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class CommitUnknown(WorkInterrupted):
    """The connection died while committing, and the work cannot tell whether its commit landed:
    redoing it might do it twice, so it is not redone."""


def transient(exc: BaseException) -> bool:
    """A fault that redoing the work on a new connection may get past."""
    if isinstance(exc, CommitUnknown):
        return False
    return database_unavailable(exc) or sqlstate(exc) in RETRY_SQLSTATES


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases, or one in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1]
    return None if not path or path == ":memory:" else path


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pgbouncer: bool = False,
    pool_timeout: float = 30.0,
) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A file's pool keeps every connection it opened: an overflow connection closed at
        # checkin and opened again under load cost a thread, four PRAGMAs and a trace hook each time.
        sizes = {"pool_size": pool_size + max_overflow, "max_overflow": 0} if sqlite_path(url) else {}
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_pre_ping=False, pool_reset_on_return=None, **sizes
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        _sqlite_idle_ends(engine)
        return engine
    try:
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ConfigError(
            "DATABASE_URL points at PostgreSQL but its driver, asyncpg, is not installed: "
            "pip install 'switchboard[postgres]' (from a checkout: pip install -e '.[postgres]')."
        ) from None
    parsed, connect_args = asyncpg_options(make_url(url))
    if pgbouncer:
        # Transaction pooling hands each transaction a different server connection, where a
        # statement prepared on another one does not exist: no cache, and unique names.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid.uuid4()}__"
        parsed = parsed.update_query_dict({"prepared_statement_cache_size": "0"})
    engine = create_async_engine(
        parsed,
        poolclass=PatientPool,
        pool_pre_ping=False,  # _ping_on_checkout: one round trip, not three
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,  # a busy pool makes callers wait this long, not fail
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _ping_on_checkout)
    return engine


def _ping_on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection is tried before it is handed out; a dead one (the server restarted)
    is replaced by a new one. SQLAlchemy's own pre-ping wraps its query in BEGIN/ROLLBACK for
    PgBouncer's sake (three round trips on every checkout); a simple-protocol query is
    one, prepares nothing, and is as safe behind PgBouncer."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.util import await_

    try:
        await_(dbapi_conn.driver_connection.execute("SELECT 1"))
    except Exception as exc:  # any driver error: the pool drops it
        raise sa_exc.DisconnectionError(f"ping failed: {type(exc).__name__}") from exc


class PatientPool(AsyncAdaptedQueuePool):
    """A pool whose checkouts wait, for up to RETRY_SECONDS, while the server refuses connections
    for now: restarting, in recovery, or out of connection slots ("too many clients").

    Waiting is always safe here, nothing has run yet; failing would lose the caller's work. Each
    try goes back through the pool, so a connection another caller returns meanwhile is taken
    (the server being full is exactly when our own idle connections are the ones to use), and a
    pre-ping that finds a connection dead after a restart waits for the server like a new one.
    """

    faults = FaultClock()  # replaced by its Database's own (`Database.__init__`)

    def recreate(self) -> PatientPool:
        """A disposed pool's successor keeps its database's fault clock."""
        pool = cast(PatientPool, super().recreate())
        pool.faults = self.faults
        return pool

    def connect(self) -> PoolProxiedConnection:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy.util import await_

        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_SECONDS
        delay, tries = 0.05, 0
        while True:
            try:
                try:
                    return super().connect()
                except sa_exc.InvalidRequestError as exc:
                    if "connection is closed" not in str(exc):
                        raise
                    # SQLAlchemy's words for "every connection it tried failed its ping": behind
                    # PgBouncer the connect succeeds while the server behind it is restarting.
                    raise sa_exc.DisconnectionError(f"no connection answers: {exc}") from exc
            except Exception as exc:  # DB errors share no class: sorted below
                tries += 1
                if database_unavailable(exc):
                    self.faults.now()
                if IMPATIENT.get() or not database_unavailable(exc) or loop.time() + delay > deadline:
                    raise
                log.log(
                    logging.WARNING if tries == 1 else logging.INFO,
                    "connect: database unavailable (%s, SQLSTATE %s); retry %d in %.2f s",
                    type(exc).__name__,
                    sqlstate(exc) or "-",
                    tries,
                    delay,
                )
            await_(asyncio.sleep(delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, 1.0)


class Database:
    """Async access to the database; one per process, shared by every listener.

    Queries live in one module per aggregate and are reached as `db.conversations`,
    `db.runs`, `db.feedback`, `db.digests`, `db.jobs`, `db.approvals`,
    `db.parked`, `db.channel_settings` and `db.usage`, so a call site names what it touches.
    """

    def __init__(
        self, url: str, prices: Mapping[str, tuple[float, float]] | None = None, **engine_options: Any
    ) -> None:
        self.url = url
        self.retry_seconds = RETRY_SECONDS
        self.prices: Mapping[str, tuple[float, float]] = prices or {}  # MODEL_PRICES: a run's cost
        self.engine = make_engine(url, **engine_options)
        self.faults = FaultClock()
        if isinstance(self.engine.sync_engine.pool, PatientPool):
            self.engine.sync_engine.pool.faults = self.faults
        # Reads in autocommit, on the same pool. On SQLite the pool's own connections as they
        # are: pysqlite begins no transaction for a SELECT, and the autocommit switch cost three
        # trips to the connection's thread per read unit. Not behind PgBouncer: asyncpg prepares
        # a statement, then runs it, and outside a transaction transaction pooling may send the
        # two to different server connections.
        self._reader = (
            self.engine
            if engine_options.get("pgbouncer")
            else self.engine.execution_options(**{READS_ONLY: True})
            if self.dialect == "sqlite"
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.conversations = Conversations(self)
        self.runs = Runs(self)
        self.feedback = Feedbacks(self)
        self.digests = Digests(self)
        self.assistant_contexts = AssistantContexts(self)
        self.jobs = Jobs(self)
        self.approvals = Approvals(self)
        self.parked = ParkedCalls(self)
        self.channel_settings = ChannelSettings(self)
        self.usage = UsageQueries(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert_statement(self, table: Any) -> Any:
        """This dialect's INSERT, which knows ON CONFLICT."""
        from sqlalchemy.dialects import postgresql, sqlite

        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads, in autocommit: each statement is its own snapshot, with
        no BEGIN and ROLLBACK around them (two round trips on Postgres for every read, and a
        transaction each in the counts). Behind PgBouncer (DB_PGBOUNCER) the reads are one
        transaction, which pins them to one server connection."""
        async with self._reader.connect() as conn:
            yield conn

    async def retrying(
        self, work: Callable[[], Awaitable[T]], *, what: str = "database work", seconds: float | None = None
    ) -> T:
        """`work()`, redone on a transient fault (a restart, a dropped connection, no free slot on
        the server) with growing pauses for up to `retry_seconds`; then its error is raised.

        The one retry policy: a restart mid-traffic redoes the work on a new connection instead
        of failing it. `work` must be safe to redo: a read, or one transaction whose failed
        commit rolls everything back (use `transaction()` for writes, which knows the difference).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.retry_seconds if seconds is None else seconds)
        delay, tries = 0.05, 0
        while True:
            try:
                return await work()
            except Exception as exc:  # DB errors share no class: sorted below
                tries += 1
                if transient(exc):
                    self.faults.now()
                if not transient(exc) or loop.time() + delay > deadline:
                    raise
                # The class and SQLSTATE only: a DBAPIError's text carries the statement's values.
                log.log(
                    logging.WARNING if tries == 1 else logging.INFO,
                    "%s: database unavailable (%s, SQLSTATE %s); retry %d in %.2f s",
                    what,
                    type(exc).__name__,
                    sqlstate(exc) or "-",
                    tries,
                    delay,
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 1.0)

    async def transaction(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        landed: Callable[[AsyncConnection], Awaitable[T | None]] | None = None,
        what: str = "database write",
    ) -> T:
        """`work(conn)` in one transaction on a pooled connection, committed, redone on a
        transient fault (see `retrying`).

        A connection that dies while committing leaves the outcome unknown: the next attempt
        first asks `landed(conn)` whether the earlier commit is in the database (a value: it is,
        and that value is the result). Without `landed` such a failure raises CommitUnknown.
        """
        in_doubt = False

        async def attempt() -> T:
            nonlocal in_doubt
            async with self.engine.connect() as conn:
                trans = await conn.begin()
                if in_doubt and landed is not None:
                    found = await landed(conn)
                    if found is not None:
                        await trans.rollback()
                        return found
                result = await work(conn)
                try:
                    await trans.commit()
                except Exception as exc:  # DB errors share no class: sorted below
                    if not transient(exc):
                        raise
                    if landed is None:
                        raise CommitUnknown(f"{what}: the connection died while committing") from exc
                    in_doubt = True
                    raise
                return result

        return await self.retrying(attempt, what=what)

    async def insert_new(self, rows: list[SQLModel]) -> bool:
        """Insert rows of one table unless any key exists; True when all were new.

        ON CONFLICT DO NOTHING rather than catching IntegrityError: losing a dedupe race is
        normal, and Postgres logs every failed INSERT as an ERROR. Redone on a transient fault,
        except when its commit's outcome is unknown (CommitUnknown): a redo would find its own
        rows and call them a duplicate.
        """
        stmt = insert_ignoring(self.dialect, rows)

        async def work(conn: AsyncConnection) -> bool:
            return (await conn.execute(stmt)).rowcount == len(rows)

        async def attempt() -> bool:
            async with self.engine.connect() as conn:
                trans = await conn.begin()
                if not await work(conn):
                    await trans.rollback()
                    return False
                try:
                    await trans.commit()
                except Exception as exc:  # DB errors share no class: sorted below
                    if transient(exc):
                        raise CommitUnknown("insert: the connection died while committing") from exc
                    raise
            return True

        return await self.retrying(attempt, what=f"insert into {type(rows[0]).__name__}")

    async def prepare(self, auto_migrate: bool) -> None:
        """Make sure the schema is current before serving: migrate, or refuse in one line."""
        await schema.prepare(self.engine, self.url, auto_migrate)

    async def create_schema(self) -> None:
        """The schema at the newest revision (tests, benchmarks, the console's scratch database)."""
        await schema.migrate(self.engine, self.url)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raises when the database does not answer within `timeout` seconds."""
        with impatient():  # the answer is whether it answers now
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_reset(dbapi_conn: Any, _record: Any, _state: Any) -> None:
    """A connection back in the pool is rolled back only if a transaction is open (SQLite itself
    says, no trip to its thread): the rollback after every committed write cost as much as the
    trace's own write."""
    if dbapi_conn.driver_connection.in_transaction:
        dbapi_conn.rollback()


def _sqlite_idle_ends(engine: AsyncEngine) -> None:
    """COMMIT and ROLLBACK go to the connection's thread only when SQLite has a transaction open
    (it says so itself, no trip there): a unit that only read, or whose write ended it already,
    has nothing to end, and pysqlite would do nothing there but the trip costs two thread switches."""
    dialect = engine.sync_engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def open_here(dbapi_conn: Any) -> bool:
        try:
            return bool(dbapi_conn.driver_connection.in_transaction)
        except Exception:  # closed or gone: let the driver say so
            return True

    def do_commit(dbapi_conn: Any) -> None:
        if open_here(dbapi_conn):
            commit(dbapi_conn)

    def do_rollback(dbapi_conn: Any) -> None:
        if open_here(dbapi_conn):
            rollback(dbapi_conn)

    dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; busy_timeout waits instead of failing on a lock."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@event.listens_for(Session, "before_flush")
def _fit_column_lengths(session: Session, _context: Any, _instances: Any) -> None:
    """The same net for ORM writes."""
    for obj in [*session.new, *session.dirty]:
        mapper = inspect(obj).mapper
        values = {c.key: getattr(obj, c.key, None) for c in mapper.columns}
        for key, value in fit_lengths(mapper.local_table, values).items():
            if value is not values[key]:
                setattr(obj, key, value)
