"""One turn at a time per conversation, in arrival order, across processes and crashes.

Each message is queued in the database before Slack gets its ack, then its task competes for the
conversation's lease. The holder answers every queued message oldest first (each one's history
ends at that message, because a message enters the history only when its turn starts) and
releases. The lease is renewed while the holder works; if the holder dies (kill -9, OOM, a lost
host), the lease lapses and the next holder (a waiting task, a Slack retry, or the recovery sweep
of any process) finds the turn left `running` and redoes it: the new attempt adopts the dead
one's placeholder in Slack, or sees that the answer was already shown and only records it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot import metrics
from bot.db.models import QueuedTurn
from bot.db.work import FINISHED, MAX_ATTEMPTS
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.conversation import Attempt, Turn, answer, give_up

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 1.0
RESUME_WITHIN = timedelta(minutes=15)  # older queued messages are stale by the time we are back


def turn_from_json(text: str) -> Turn:
    """The queued Turn back; JSON made its tuples lists, and a frozen Turn keeps tuples."""
    fields = json.loads(text)
    fields["files"] = tuple(fields.get("files") or ())
    return Turn(**fields)


def conversation_lease(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def answer_tag(turn_id: int) -> str:
    """What marks this turn's messages in Slack, so a later attempt can find them."""
    return f"turn{turn_id}"


async def accept(rt: Runtime, turn: Turn) -> None:
    """Queue `turn` (call it before the ack: once queued, no crash can lose it) and start on it.

    A delivery seen before (Slack's retry, a duplicate event) is counted and not queued again;
    if its turn is still unfinished, a task waits on it, so a retry that arrives after its
    process died is what gets it answered.
    """
    conversation_id, queued, new = await _enqueue(rt, turn)
    if not new:
        metrics.EVENTS_DEDUPLICATED.inc()
        if await rt.db.turns.state(queued) in FINISHED:
            log.info("skipping a repeated delivery of %s/%s", turn.channel, turn.ts)
            return
    waiter = _serve(rt, conversation_id, answer_tag(queued), lambda: _finished(rt, queued))
    rt.tasks.spawn(waiter, name=f"answer {turn.channel}/{turn.ts}")


async def take_turn(rt: Runtime, turn: Turn) -> None:
    """Queue `turn` and return once it has been answered (by this task or another holder)."""
    conversation_id, queued, _ = await _enqueue(rt, turn)
    await _serve(rt, conversation_id, answer_tag(queued), lambda: _finished(rt, queued))


async def _enqueue(rt: Runtime, turn: Turn) -> tuple[int, int, bool]:
    convo = await rt.db.conversations.get_or_create(turn.team, turn.channel, turn.thread_ts)
    assert convo.id is not None
    queued, new = await rt.db.turns.enqueue(convo.id, turn.ts, dataclasses.asdict(turn))
    return convo.id, queued, new


class TurnRecovery:
    """The periodic sweep: conversations whose queued work has no live holder get one here."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.serving: set[int] = set()  # conversations this process's sweep is already serving

    async def sweep(self) -> int:
        """Start serving every unheld conversation with work left; returns how many."""
        started = 0
        for conversation_id in await self.rt.db.turns.unserved_conversations(RESUME_WITHIN):
            if conversation_id in self.serving or await self._held(conversation_id):
                continue
            self.serving.add(conversation_id)
            self.rt.tasks.spawn(self._serve(conversation_id), name=f"recover {conversation_id}")
            started += 1
        if started:
            log.info("recovering %s conversation(s) with unanswered messages", started)
        return started

    async def _held(self, conversation_id: int) -> bool:
        lease = await self.rt.db.leases.holder(conversation_lease(conversation_id))
        return lease is not None and lease.expires_at > time.time()

    async def _serve(self, conversation_id: int) -> None:
        async def nothing_left() -> bool:
            return await self.rt.db.turns.next_pending(conversation_id) is None

        try:
            await _serve(self.rt, conversation_id, "recovery", nothing_left)
        finally:
            self.serving.discard(conversation_id)


async def _finished(rt: Runtime, queued: int) -> bool:
    return await rt.db.turns.state(queued) in FINISHED


async def _serve(rt: Runtime, conversation_id: int, name: str, done: Callable[[], Awaitable[bool]]) -> None:
    """Compete for the conversation's lease until `done()`; while holding it, answer the queue."""
    # One owner per task: two tasks of one process must not both count as "already ours".
    key = conversation_lease(conversation_id)
    owner = f"{rt.db.leases.owner}/{name}/{uuid.uuid4().hex[:6]}"
    ttl = rt.settings.work_lease_seconds
    poll = POLL_SECONDS
    while True:
        if await rt.db.leases.acquire(key, owner, ttl):
            await _answer_queue(rt, conversation_id, key, owner)
            poll = POLL_SECONDS
        if await done():
            return
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, MAX_POLL_SECONDS)  # a long queue's waiters don't hammer the database


async def _answer_queue(rt: Runtime, conversation_id: int, key: str, owner: str) -> None:
    async with rt.db.leases.kept(key, owner, rt.settings.work_lease_seconds) as keeper:
        await _take_over(rt, conversation_id)
        while not keeper.lost:
            queued = await rt.db.turns.next_pending(conversation_id)
            if queued is None:
                return
            await _answer_one(rt, queued)


async def _take_over(rt: Runtime, conversation_id: int) -> None:
    """What a dead holder left running is redone (or given up after MAX_ATTEMPTS)."""
    left = await rt.db.turns.requeue_running(conversation_id, MAX_ATTEMPTS)
    if not left:
        return
    log.warning("conversation %s: taking over %s turn(s) a dead process left", conversation_id, len(left))
    await rt.db.runs.interrupt_conversation(conversation_id, "its process died; the turn was redone")
    for turn in left:
        if turn.state == "interrupted":
            gave_up = turn_from_json(turn.turn)
            install.serve(gave_up.team)
            await give_up(rt, gave_up, _attempt(rt, turn, redo=True))


async def _answer_one(rt: Runtime, queued: QueuedTurn) -> None:
    assert queued.id is not None
    turn = turn_from_json(queued.turn)
    install.serve(turn.team)  # recovered turns too: Slack calls use this workspace's token
    number = await rt.db.turns.start(queued.id)
    try:
        await answer(rt, turn, _attempt(rt, queued, redo=number > 1))
    except asyncio.CancelledError:
        await asyncio.shield(rt.db.turns.set_state(queued.id, "interrupted"))
        raise
    except Exception:
        log.exception("conversation %s: turn %s failed", queued.conversation_id, queued.id)
        await rt.db.turns.set_state(queued.id, "failed")
    else:
        await rt.db.turns.set_state(queued.id, "done")


def _attempt(rt: Runtime, queued: QueuedTurn, *, redo: bool) -> Attempt:
    """This try at a queued turn; a stream it starts is recorded with the turn at once."""
    turn_id = queued.id
    assert turn_id is not None

    async def record(ts: str) -> None:
        await rt.db.turns.set_stream(turn_id, ts)

    streams = (queued.stream_ts,) if queued.stream_ts else ()
    return Attempt(tag=answer_tag(turn_id), redo=redo, streams=streams, on_stream=record)
