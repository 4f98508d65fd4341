"""Conversation turns as jobs of the work engine: one at a time per conversation, in arrival order.

Each message is recorded as a `turn` job before Slack gets its ack (bot/work): its queue is the
conversation, so the engine starts a conversation's turns one at a time, oldest first (each
one's history ends at its own message, because a message enters the history only when its turn
starts), and its person is the asker, whose answers in flight are capped. A retried or
duplicate delivery finds its job by key and is not queued again. If the answering process dies,
the engine hands the turn to another attempt, which adopts the dead one's placeholder in Slack,
or sees that the answer was already shown and only records it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from bot.runtime import Runtime
from bot.slack import install
from bot.slack.answering.conversation import Attempt, Turn, answer, give_up
from bot.work import Job, current_job

log = logging.getLogger(__name__)

KIND = "turn"


def turn_from_json(fields: dict[str, Any] | str) -> Turn:
    """The recorded Turn back; JSON made its tuples lists, and a frozen Turn keeps tuples."""
    values = json.loads(fields) if isinstance(fields, str) else dict(fields)
    values["files"] = tuple(values.get("files") or ())
    return Turn(**values)


def answer_tag(job_id: int) -> str:
    """What marks this turn's messages in Slack, so a later attempt can find them."""
    return f"turn{job_id}"


def conversation_queue(team: str, channel: str, thread_ts: str) -> str:
    return f"conversation:{team}:{channel}:{thread_ts}"


async def accept(rt: Runtime, turn: Turn) -> int:
    """Record `turn` (call it before the ack: once recorded, no crash can lose it); the engine
    starts it when its conversation and its asker have room. Returns the job's id.

    Inside the job of the recorded delivery that carries this message (bot/slack/door/deliveries.py),
    that job already holds the conversation's place and the asker's slot: the turn is answered
    there and then, as that job.
    """
    delivery = current_job.get()
    queue = conversation_queue(turn.team, turn.channel, turn.thread_ts)
    if delivery is not None and delivery.kind == "event" and delivery.queue == queue:
        await _answer_in(rt, turn, delivery)
        return delivery.id
    job_id, new = await rt.work.submit(
        KIND,
        f"turn:{turn.team}:{turn.channel}:{turn.ts}",
        dataclasses.asdict(turn),
        queue=queue,
        person=f"{turn.team}:{turn.user}",
    )
    if not new:
        log.info("skipping a repeated delivery of %s/%s", turn.channel, turn.ts)
    return job_id


async def take_turn(rt: Runtime, turn: Turn) -> None:
    """Record `turn` and return once it has been answered (by this process or another)."""
    await rt.work.wait(await accept(rt, turn))


async def run_turn(rt: Runtime, job: Job) -> None:
    turn = turn_from_json(job.payload)
    install.serve(turn.team)  # resumed turns too: Slack calls use this workspace's token
    await _answer_in(rt, turn, job)


async def _answer_in(rt: Runtime, turn: Turn, job: Job) -> None:
    if job.redo:
        convo = await rt.db.conversations.find(turn.team, turn.channel, turn.thread_ts)
        if convo is not None and convo.id is not None:
            await rt.db.runs.interrupt_conversation(convo.id, "its process stopped; the turn was redone")
    await answer(rt, turn, attempt_of(job))


async def give_up_turn(rt: Runtime, job: Job) -> None:
    """Out of attempts: what the dead attempts showed becomes an apology."""
    turn = turn_from_json(job.payload)
    install.serve(turn.team)
    await give_up(rt, turn, attempt_of(job))


def register(rt: Runtime) -> None:
    rt.work.kind(KIND, lambda job: run_turn(rt, job), give_up=lambda job: give_up_turn(rt, job))


def attempt_of(job: Job) -> Attempt:
    """This try at a turn; a stream it starts is noted with the job at once."""

    async def record(ts: str) -> None:
        await job.note(streams=[ts])

    streams = tuple(job.progress.get("streams") or ())
    return Attempt(tag=answer_tag(job.id), redo=job.redo, streams=streams, on_stream=record)
