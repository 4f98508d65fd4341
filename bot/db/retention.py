"""Retention: rows older than RETENTION_DAYS are deleted, so the database stops growing forever.

Purged: chat messages, runs with their steps and feedback, finished jobs, and conversations left
with no messages. Digest schedules and their claims are kept: a digest's period starts at the
previous one it posted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, exists, select
from sqlmodel import col

from bot.db.models import Conversation, Feedback, Job, Message, Run, Step, utcnow
from bot.db.queue.jobs import FINISHED

if TYPE_CHECKING:
    from bot.db.database import Database

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 6 * 3600
BATCH = 1000


async def purge(db: Database, older_than: datetime) -> dict[str, int]:
    """Delete what is older than `older_than`; returns how many rows per table."""
    counts = {"feedback": 0, "step": 0, "run": 0}
    while True:  # runs in batches of fixed ids, each with its steps and feedback in one transaction
        async with db.engine.begin() as conn:
            ids = list(
                (await conn.execute(select(col(Run.id)).where(col(Run.started_at) < older_than).limit(BATCH)))
                .scalars()
                .all()
            )
            if not ids:
                break
            for table, model in (("feedback", Feedback), ("step", Step)):
                result = await conn.execute(delete(model).where(col(model.run_id).in_(ids)))
                counts[table] += result.rowcount or 0
            result = await conn.execute(delete(Run).where(col(Run.id).in_(ids)))
            counts["run"] += result.rowcount or 0
    statements = {
        "message": delete(Message).where(col(Message.created_at) < older_than),
        # a job holds the message's text; long finished, it is only history
        "job": delete(Job).where(col(Job.created_at) < older_than, col(Job.state).in_(FINISHED)),
        "conversation": delete(Conversation).where(
            col(Conversation.updated_at) < older_than,
            ~exists().where(col(Message.conversation_id) == Conversation.id),
        ),
    }
    for table, statement in statements.items():  # one short transaction per table
        async with db.engine.begin() as conn:
            result = await conn.execute(statement)
            counts[table] = result.rowcount or 0
    return counts


async def retention_loop(db: Database, days: int, every: float = PURGE_EVERY_SECONDS) -> None:
    """Purge at start, then every `every` seconds; a failed purge is logged and retried later."""
    while True:
        try:
            counts = await purge(db, utcnow() - timedelta(days=days))
            if any(counts.values()):
                log.info("retention: deleted rows older than %d days: %s", days, counts)
        except Exception:  # a periodic job's boundary
            log.exception("retention: purge failed; will retry")
        await asyncio.sleep(every)
