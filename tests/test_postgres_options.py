"""Issue 14: hosted-Postgres URL options translated for asyncpg, and PgBouncer's transaction
pooling (a real PgBouncer in front of the test server, where one is installed)."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import Database
from bot.db.database import asyncpg_options
from bot.db.models import utcnow
from bot.settings import ConfigError
from tests.postgres import PGBOUNCER, pgbouncer

SERVER = os.environ.get("TEST_DATABASE_URL", "").strip()
needs_postgres = pytest.mark.skipif(not SERVER, reason="TEST_DATABASE_URL names no PostgreSQL server")


def test_libpq_options_become_asyncpg_arguments() -> None:
    url = make_url(
        "postgresql+asyncpg://u:p@db.example:6543/app?sslmode=require&connect_timeout=7"
        "&application_name=switchboard&options=-c%20statement_timeout%3D5000"
    )
    cleaned, args = asyncpg_options(url)
    assert dict(cleaned.query) == {} and cleaned.host == "db.example" and cleaned.port == 6543
    assert args == {
        "ssl": "require",
        "timeout": 7.0,
        "server_settings": {"application_name": "switchboard", "statement_timeout": "5000"},
    }
    _, verify = asyncpg_options(make_url("postgresql+asyncpg://u@h/db?sslmode=verify-full"))
    assert verify["ssl"].check_hostname is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslmode=sometimes", "sslmode must be one of disable, allow, prefer, require"),
        ("connect_timeout=soon", "connect_timeout must be seconds"),
        ("keepalives=1", "option(s) keepalives are not supported"),
    ],
)
def test_bad_or_unknown_options_are_named(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        asyncpg_options(make_url(f"postgresql+asyncpg://u@h/db?{query}"))


@needs_postgres
async def test_a_hosted_style_url_connects(db_url) -> None:
    db = Database(f"{db_url}?sslmode=disable&connect_timeout=5&application_name=switchboard-test")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SHOW application_name"))).scalar() == "switchboard-test"
    finally:
        await db.close()


async def _claims(db: Database, n: int) -> list[BaseException | bool]:
    await db.create_schema()
    return await asyncio.gather(*(db.digests.claim(i, utcnow()) for i in range(n)), return_exceptions=True)


@needs_postgres
@pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")
async def test_behind_pgbouncer_transaction_pooling_every_query_works(db_url) -> None:
    name = make_url(db_url).database
    async with pgbouncer(SERVER) as port:
        through = make_url(db_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        db = Database(through, pgbouncer=True, pool_size=20, max_overflow=0)
        try:
            results = await _claims(db, 100)
        finally:
            await db.close()
    assert results == [True] * 100, [r for r in results if r is not True][:3]
    assert name  # the per-test database, reached through PgBouncer
