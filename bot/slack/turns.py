"""One turn at a time per conversation, in arrival order, across processes.

Each message is queued in the database, then its task competes for the conversation's lease.
The holder answers every queued message oldest first (each one's history ends at that message,
because a message enters the history only when its turn starts) and releases; a message whose
task lost the race waits until it is answered, or until the holder's lease lapses (the holder
crashed) and it can take over. Nothing is answered twice: a turn left `running` by a crashed
owner is marked interrupted, not re-run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot.db.turns import FINISHED
from bot.runtime import Runtime
from bot.slack.conversation import Turn, answer

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # renewed every 10 s while answering; a crashed holder blocks at most this long
POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 1.0
RESUME_WITHIN = timedelta(minutes=15)  # older queued messages are stale by the time we are back


def conversation_lease(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


async def take_turn(rt: Runtime, turn: Turn) -> None:
    """Queue `turn` and return once it has been answered (by this task or another holder)."""
    convo = await rt.db.conversations.get_or_create(turn.team, turn.channel, turn.thread_ts)
    assert convo.id is not None
    queued = await rt.db.turns.enqueue(convo.id, turn.ts, dataclasses.asdict(turn))
    await _serve(rt, convo.id, f"turn{queued}", lambda: _finished(rt, queued))


async def resume_waiting(rt: Runtime) -> int:
    """At start: turns still queued when their process stopped are answered now, in order."""
    waiting = await rt.db.turns.waiting_conversations(RESUME_WITHIN)
    for conversation_id in waiting:

        async def nothing_left(cid: int = conversation_id) -> bool:
            return await rt.db.turns.next_pending(cid) is None

        rt.tasks.spawn(_serve(rt, conversation_id, "resume", nothing_left), name=f"resume {conversation_id}")
    if waiting:
        log.info("resuming %s conversation(s) with queued messages", len(waiting))
    return len(waiting)


async def _finished(rt: Runtime, queued: int) -> bool:
    return await rt.db.turns.state(queued) in FINISHED


async def _serve(rt: Runtime, conversation_id: int, name: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Compete for the conversation's lease until `done()`; while holding it, answer the queue."""
    key, owner = conversation_lease(conversation_id), f"{rt.db.leases.owner}/{name}"
    poll = POLL_SECONDS
    while True:
        if await rt.db.leases.acquire(key, owner, LEASE_SECONDS):
            await _answer_queue(rt, conversation_id, key, owner)
            poll = POLL_SECONDS
        if await done():
            return
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, MAX_POLL_SECONDS)  # a long queue's waiters don't hammer the database


async def _answer_queue(rt: Runtime, conversation_id: int, key: str, owner: str) -> None:
    async with rt.db.leases.kept(key, owner, LEASE_SECONDS) as keeper:
        if await rt.db.turns.abandon_running(conversation_id):
            log.warning("conversation %s: a crashed owner left a turn unfinished", conversation_id)
        while not keeper.lost:
            queued = await rt.db.turns.next_pending(conversation_id)
            if queued is None:
                return
            assert queued.id is not None
            await rt.db.turns.set_state(queued.id, "running")
            try:
                await answer(rt, Turn(**json.loads(queued.turn)))
            except asyncio.CancelledError:
                await asyncio.shield(rt.db.turns.set_state(queued.id, "interrupted"))
                raise
            except Exception:
                log.exception("conversation %s: turn %s failed", conversation_id, queued.id)
                await rt.db.turns.set_state(queued.id, "failed")
            else:
                await rt.db.turns.set_state(queued.id, "done")
