"""Recording new jobs, group-committed, on whichever event loop records them.

The front door records on its own thread's loop (bot/slack/door/front_door.py `DoorThread`; on
SQLite into the inbox, bot/db/queue/inbox.py) and the engine's own submits (commands, digests,
approvals) record on the main loop; both go through one `Recorder` each, with the same batching
and dedupe, and wake the claimer when a job is new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bot.db.queue.jobs import NewJob
from bot.ops import metrics

Add = Callable[[list[NewJob]], Awaitable[list[tuple[int, bool]]]]


class Recorder:
    """Submits made while a write is in flight share the next transaction (group commit), so a
    burst of deliveries costs a few transactions, not one each."""

    def __init__(self, add: Add, on_new: Callable[[], None]) -> None:
        self.add = add  # one transaction for a batch: the job table's, or the inbox's (SQLite)
        self.on_new = on_new  # wakes the claimer (thread-safe when the claimer's loop is another)
        self._batch: list[tuple[NewJob, asyncio.Future[tuple[int, bool]]]] = []
        self._flushing: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A submit is waiting for its transaction (nothing settled yet)."""
        return bool(self._batch) or (self._flushing is not None and not self._flushing.done())

    async def submit(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        queue: str | None = None,
        person: str | None = None,
    ) -> tuple[int, bool]:
        """Record a job (durable when this returns): (its id, True), or the first job's id and
        False when `key` was recorded before (a repeated delivery)."""
        future: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._batch.append((NewJob(kind, key, payload, queue, person), future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="work: record")
        result = await future
        if result[1]:
            self.on_new()
        else:
            metrics.EVENTS_DEDUPLICATED.inc()
        return result

    async def _flush(self) -> None:
        while self._batch:
            await asyncio.sleep(0)  # let the submits of this moment join the batch
            batch, self._batch = self._batch, []
            try:
                results = await self.add([job for job, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            seen: set[str] = set()
            for (job, future), (job_id, new) in zip(batch, results, strict=True):
                if not future.done():  # a key twice in one batch (a quick retry) is new once
                    future.set_result((job_id, new and job.key not in seen))
                seen.add(job.key)
