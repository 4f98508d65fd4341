"""Leases on SQLite and Postgres: one owner at a time, expiry, takeover, renewal, release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlmodel import delete

from bot.db import Database
from bot.db.models import Lease
from tests.postgres import throwaway_postgres


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def two_processes(request, tmp_path) -> AsyncIterator[tuple[Database, Database]]:
    """Two Database handles on one database, as two processes would have."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/leases.db"
    else:
        url = request.getfixturevalue("postgres_url")
    first, second = Database(url), Database(url)
    await first.create_schema()
    async with first.session() as s:  # the Postgres server is shared by the module's tests
        await s.exec(delete(Lease))
        await s.commit()
    yield first, second
    await first.close()
    await second.close()


async def test_one_owner_at_a_time_until_release(two_processes) -> None:
    a, b = two_processes
    assert await a.leases.acquire("conversation:1", "A", ttl=30)
    assert not await b.leases.acquire("conversation:1", "B", ttl=30)
    assert await a.leases.acquire("conversation:1", "A", ttl=30)  # re-entrant for its owner
    assert await b.leases.acquire("conversation:2", "B", ttl=30)  # other keys are independent
    assert not await b.leases.release("conversation:1", "B")  # only the owner releases
    assert await a.leases.release("conversation:1", "A")
    assert await b.leases.acquire("conversation:1", "B", ttl=30)
    held = await a.leases.holder("conversation:1")
    assert held is not None and held.owner == "B"


async def test_an_expired_lease_is_taken_over_and_the_old_owner_knows(two_processes) -> None:
    a, b = two_processes
    assert await a.leases.acquire("digest:7", "A", ttl=-1)  # already expired: A crashed
    assert await b.leases.acquire("digest:7", "B", ttl=30)
    assert not await a.leases.renew("digest:7", "A", ttl=30)
    assert not await a.leases.release("digest:7", "A")
    assert await b.leases.renew("digest:7", "B", ttl=30)
    held = await b.leases.holder("digest:7")
    assert held is not None and held.owner == "B"


async def test_concurrent_acquires_from_two_processes_have_one_winner(two_processes) -> None:
    a, b = two_processes
    for key in ("free", "expired"):
        if key == "expired":
            assert await a.leases.acquire(key, "crashed", ttl=-1)
        tries = [
            db.leases.acquire(key, f"owner{i}-{n}", ttl=30) for i in range(10) for n, db in enumerate((a, b))
        ]
        results = await asyncio.gather(*tries)
        assert results.count(True) == 1, key


async def test_a_kept_lease_outlives_its_ttl_and_is_released_after(two_processes) -> None:
    a, b = two_processes
    assert await a.leases.acquire("long", "A", ttl=0.9)
    async with a.leases.kept("long", "A", ttl=0.9) as keeper:
        await asyncio.sleep(2.0)  # more than twice the ttl: only renewals keep it
        assert not await b.leases.acquire("long", "B", ttl=30)
        assert not keeper.lost
    assert await a.leases.holder("long") is None


async def test_wait_acquire_gets_the_lease_when_the_holder_lets_go(two_processes) -> None:
    a, b = two_processes
    assert await a.leases.acquire("turn", "A", ttl=30)
    assert not await b.leases.wait_acquire("turn", "B", ttl=30, poll=0.02, timeout=0.1)
    waiting = asyncio.create_task(b.leases.wait_acquire("turn", "B", ttl=30, poll=0.02))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await a.leases.release("turn", "A")
    assert await asyncio.wait_for(waiting, 5)
