"""Waking other processes' claimers when work is recorded or finished (Postgres LISTEN/NOTIFY).

A process's own submits and finishes wake its claimer through an asyncio event; other processes
would see them only at their next poll. On Postgres, `Jobs.add` and `Jobs.finish` send a NOTIFY on
`CHANNEL` inside their transaction (delivered at commit, never for a rollback), and every process
keeps one connection that LISTENs and sets its claimer's event: a job recorded by one process is
started by an idle other one in milliseconds, with no query per waiting job.

LISTEN needs a session of its own: PgBouncer's transaction pooling hands each transaction to any
server connection, so a LISTEN there hears nothing. The listener therefore connects to
DATABASE_LISTEN_URL (a direct URL) when set, else to DATABASE_URL unless DB_PGBOUNCER says that is
a transaction pool; without either the claimer keeps its short poll, and says so once.

A NOTIFY sent while the listener was away (the server restarted) is lost, so every (re)connect
wakes the claimer once: its next claim sees whatever was recorded meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from bot.db.database import asyncpg_options
from bot.db.queue.jobs import WAKE_CHANNEL as CHANNEL

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

CHECK_SECONDS = 15.0  # a silent connection (a host gone without a reset) is noticed this fast
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # between reconnects; the last repeats


class Waker:
    """One LISTEN connection per process; `start(wake)` calls `wake(payload)` on every NOTIFY on
    CHANNEL ("new" or "done") and `wake("")` once after each (re)connect."""

    def __init__(self, url: str) -> None:
        parsed, self._connect_args = asyncpg_options(make_url(url))
        self._dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._task: asyncio.Task[None] | None = None
        self.listening = False  # True while the LISTEN connection is up (health, tests)
        self.connects = 0  # successful (re)connects so far

    async def start(self, wake: Callable[[str], None]) -> None:
        """Listen in the background: the database may be down now, the claimer polls meanwhile."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen_forever(wake), name="work: listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self, wake: Callable[[str], None]) -> None:
        import asyncpg  # type: ignore[import-untyped]

        failures = 0
        while True:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, **self._connect_args)
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload: wake(payload))
                self.listening, failures = True, 0
                self.connects += 1
                if self.connects > 1:
                    log.info("listening for new work again")
                wake("")  # what was recorded or finished while nobody listened
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), CHECK_SECONDS)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.execute("SELECT 1"), CHECK_SECONDS)
                raise ConnectionError("the server closed the connection")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.listening or failures == 0:
                    log.warning(
                        "listening for new work failed (%s); polling till it is back", type(exc).__name__
                    )
                failures += 1
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])


def waker_for(settings: Settings) -> Waker | None:
    """The waker this process's settings allow: None on SQLite (one machine: the short poll is
    cheap) and behind a transaction pool without a direct URL (logged once)."""
    url = settings.database_listen_url
    if not settings.database_url.startswith("postgresql"):
        return None
    if url is None and settings.db_pgbouncer:
        log.info(
            "DB_PGBOUNCER is on and DATABASE_LISTEN_URL is not set: LISTEN does not work through a "
            "transaction pool, so other processes' new work is seen by polling (every %.1f s)",
            settings.work_poll_seconds,
        )
        return None
    return Waker(url or settings.database_url)
