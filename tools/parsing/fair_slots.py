"""A fixed number of slots (parser workers) shared fairly between owners (the people who ask).

A semaphore serves whoever came first: one person's six hostile pages held both parser workers
and the next person's page waited behind all six (20 s). Here a freed slot goes to the waiting
owner who holds the fewest slots, ties to the one served longest ago, and each owner's own
requests keep their order. So while someone else waits, a freed slot never goes back to the
owner who already holds the most, and another owner waits at most until the first busy slot
frees: one job's deadline.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque


class FairSlots:
    """`acquire(owner)` / `release(owner)` around the use of one slot."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held: Counter[str] = Counter()
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._served: dict[str, int] = {}  # owner -> when it last got a slot (a tick)
        self._tick = 0

    @property
    def free(self) -> int:
        return self.size - self.held.total()

    def queued(self, owner: str | None = None) -> int:
        """Requests waiting for a slot: everyone's, or one owner's."""
        queues = self._waiting.values() if owner is None else [self._waiting.get(owner, deque())]
        return sum(1 for q in queues for f in q if not f.done())

    async def acquire(self, owner: str, timeout: float | None = None) -> None:
        """Wait for a slot; TimeoutError, holding none, when `timeout` seconds pass first."""
        if self.free > 0 and not self._waiting:
            self._grant(owner)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(waiter)
        self._dispatch()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(owner)  # granted just as the wait ended: pass the slot on
            else:
                waiter.cancel()
                self._forget(owner, waiter)
            raise

    def release(self, owner: str) -> None:
        self.held[owner] -= 1
        if self.held[owner] <= 0:
            del self.held[owner]
        if not self.held and not self._waiting:
            self._served.clear()  # idle: the history only matters among those who compete
        self._dispatch()

    def _grant(self, owner: str) -> None:
        self.held[owner] += 1
        self._served[owner] = self._tick
        self._tick += 1

    def _dispatch(self) -> None:
        while self.free > 0 and self._waiting:
            owner = min(self._waiting, key=lambda o: (self.held[o], self._served.get(o, -1)))
            waiter = self._waiting[owner].popleft()
            if not self._waiting[owner]:
                del self._waiting[owner]
            if not waiter.done():  # a cancelled wait is skipped
                waiter.set_result(None)
                self._grant(owner)

    def _forget(self, owner: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[owner]
