"""The database-backed RunTrace: every step of every run lands in the `step` table.

Steps are written behind the run, not in its way: `step()` queues the row, and what has queued
up is inserted in one statement, either when the bot flushes or, for a long run, `WRITE_AFTER`
seconds after the oldest unwritten step (in a writer task, while the model and tools work on).
The bot flushes before it shows the user an answer, and `traced_run` writes what is left with
the run's finish, so a step behind something the user saw is never lost, and a quick run costs
no write per step at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.db.database import Database
from bot.db.models import utcnow
from bot.db.queries.runs import Conversation
from bot.logging_setup import message_text

log = logging.getLogger(__name__)

StatusSink = Callable[[str], Awaitable[None]]
MAX_NAME_CHARS = 100
MAX_ARGUMENT_CHARS = 4_000
WRITE_AFTER = 1.0  # seconds a step may wait in memory while the run goes on


class RunRow:
    """A run's row, written when first needed rather than when the run starts: a quick answer's
    run is written once, whole, with its end (bot/work/traced_run.py); a longer one by the trace's
    write-behind (with its steps), by an approval that names it, or after RUN_ON_FILE_AFTER."""

    def __init__(
        self, db: Database, values: dict[str, Any], conversation: Conversation | None = None
    ) -> None:
        self.db = db
        self.values = values
        self.conversation = conversation
        self.task: asyncio.Task[int] | None = None
        self.ended_id: int | None = None  # set when the run's end wrote the row whole

    def start(self, steps: Sequence[dict[str, Any]] = ()) -> asyncio.Task[int]:
        """Write the row (with `steps`) unless that is under way or done."""
        if self.task is None:
            insert = self.db.runs.insert(self.values, steps, conversation=self.conversation)
            self.task = asyncio.get_running_loop().create_task(
                insert, name=f"start run {self.values['trigger']}"
            )
        return self.task

    async def ensure(self) -> int:
        """The run's id, its row written now if it was not (raises what that write raised)."""
        if self.ended_id is not None:
            return self.ended_id
        return await asyncio.shield(self.start())

    @property
    def id(self) -> int | None:
        """The id, once a row is written; None before."""
        if self.ended_id is not None:
            return self.ended_id
        task = self.task
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        return None

    async def written(self) -> int | None:
        """The id once a write under way has ended; None when no row is written."""
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.task)
        return self.id


class DbTrace:
    """Records steps on one run; forwards status lines to Slack (or wherever `on_status` says)."""

    def __init__(self, db: Database, run: int | RunRow, on_status: StatusSink | None = None) -> None:
        """`run` is the run's id, or its row, written with the first steps written (or before)."""
        self.db = db
        self._run = run
        self.on_status = on_status
        self._queued: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def step(
        self,
        kind: str,
        name: str,
        *,
        arguments: str | None = None,
        output_chars: int = 0,
        error: str | None = None,
        duration_ms: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        log.info(
            "run %s %s %s %.0f ms%s",
            self.run_id,
            kind,
            name,
            duration_ms,
            f" error={message_text(error)}" if error else "",
        )
        self._queued.append(
            {
                "kind": kind,
                "name": name[:MAX_NAME_CHARS],
                "arguments": arguments[:MAX_ARGUMENT_CHARS] if arguments else arguments,
                "output_chars": output_chars,
                "error": error,
                "duration_ms": duration_ms,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "created_at": utcnow(),  # when it happened, not when it was written
            }
        )
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WRITE_AFTER, self._write_behind)

    def _write_behind(self) -> None:
        """The timer fired: write what has queued, unless a write is already under way."""
        self._timer = None
        if self._writer is not None and self._writer.done():
            if not self._writer.cancelled() and self._writer.exception():
                log.warning("run %s: writing steps failed; retrying", self.run_id)
            self._writer = None
        if self._writer is None and (self._queued or self._unwritten()):
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"trace {self.run_id}")

    def on_file(self) -> None:
        """A run going on this long is written now (with its steps so far), so it shows while it
        runs and, should its process die, is marked interrupted by the attempt that takes over."""
        if self._timer is not None:
            self._timer.cancel()
        self._write_behind()

    def _unwritten(self) -> bool:
        return isinstance(self._run, RunRow) and self._run.task is None and self._run.ended_id is None

    @property
    def run_id(self) -> int | str:
        """The id for log lines ("?" while the run's row is still being written)."""
        if isinstance(self._run, int):
            return self._run
        found = self._run.id
        return "?" if found is None else found

    async def _write(self) -> None:
        while self._queued or self._unwritten():
            rows, self._queued = self._queued, []
            try:
                if isinstance(self._run, int):
                    await self.db.runs.add_steps(self._run, rows)
                elif self._unwritten():  # the run's row and its steps so far: one transaction
                    await asyncio.shield(self._run.start(rows))
                else:
                    await self.db.runs.add_steps(await self._run.ensure(), rows)
            except BaseException:
                self._queued[:0] = rows  # kept, in order, for flush() to retry
                raise

    def take(self) -> list[dict[str, Any]]:
        """The queued steps, handed over to be written with something else (the run's finish)."""
        rows, self._queued = self._queued, []
        return rows

    async def settle(self) -> None:
        """Stop the timer and wait for a write in flight; a failed write leaves its rows queued."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                await writer
            except Exception:  # steps are retried; the run goes on
                log.warning("run %s: writing steps failed; retrying", self.run_id, exc_info=True)

    async def flush(self) -> None:
        """Every step so far is in the database when this returns (or it raises)."""
        await self.settle()
        await self._write()

    async def status(self, text: str) -> None:
        if self.on_status is None:
            return
        try:
            await self.on_status(text)
        except Exception:  # a status line is a nicety; never fail a run over it
            log.warning("could not set status for run %s", self.run_id, exc_info=True)
