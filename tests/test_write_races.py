"""Writes that two requests make at once (a double click, two installs) end as one row, not as
an error for the second: a read that found nothing does not stop another request from inserting
the row before this one does (on Postgres and on SQLite alike: the read takes no lock)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Bot
from sqlmodel import select

from bot.db import Database
from bot.db.models import Feedback, SlackInstallation
from bot.db.workspaces.installations import Installations


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.create_schema()
    try:
        yield database
    finally:
        await database.close()


async def test_two_ratings_clicked_at_once_keep_one_row_and_no_error(db: Database) -> None:
    """Thumbs up and down clicked at once by one person: both saves looked, found no rating, and
    inserted one; the second broke the (run, user) key and its click was lost with an error."""
    run = await db.runs.start("mention", team_id="T1", channel_id="C1", user_id="U0")
    assert run.id is not None
    errors = []
    for i in range(60):
        await asyncio.sleep(random.random() / 500)
        saves = [db.feedback.save(run.id, f"U{i}", value) for value in ("good", "bad")]
        errors += [
            r for r in await asyncio.gather(*saves, return_exceptions=True) if isinstance(r, Exception)
        ]
    async with db.session() as s:
        rows = (await s.exec(select(Feedback).where(Feedback.run_id == run.id))).all()
    assert errors == [] and sorted(r.user_id for r in rows) == sorted(f"U{i}" for i in range(60))


async def test_one_workspace_installed_twice_at_once_keeps_one_row_and_no_error(db: Database) -> None:
    """Two OAuth callbacks of one workspace finishing at once (a double submit, two admins): both
    looked, found no installation, and inserted one; the second broke the workspace's key and
    its installer saw an error page."""
    store = Installations(db, Fernet.generate_key().decode())
    errors = []
    for i in range(60):
        await asyncio.sleep(random.random() / 500)
        saves = [
            store.async_save_bot(
                Bot(team_id=f"T{i}", bot_token=token, bot_id="B1", bot_user_id="UBOT", installed_at=0.0)
            )
            for token in ("xoxb-first", "xoxb-second")
        ]
        errors += [
            r for r in await asyncio.gather(*saves, return_exceptions=True) if isinstance(r, Exception)
        ]
    async with db.session() as s:
        rows = (await s.exec(select(SlackInstallation))).all()
    assert errors == [] and sorted(r.team_id for r in rows) == sorted(f"T{i}" for i in range(60))
    found = await store.async_find_bot(enterprise_id=None, team_id="T7")
    assert found is not None and found.bot_token in ("xoxb-first", "xoxb-second")
