"""Events API deliveries recorded at the front door, dispatched to the listeners as jobs.

The ack path only verifies, dedupes, records and acks: a signed `event_callback` is written as
an `event` job (group-committed with the deliveries of the same moment) and Slack gets its 200
without waiting for Bolt's dispatch or for anything an answer does. The job then runs Bolt's
dispatch off the ack path; a listener that answers the message does it inside this same job
(bot/slack/answering/turns.py `accept`), so one delivery is one job.

A message's job is queued on its conversation (the same queue as its turn), which keeps a
thread's messages in arrival order, and counted against its sender's answer slots. Messages no
listener would answer (the bot's own, edits, other bots) are acked without being recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.db.database import database_unavailable
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.answering.conversation import DATABASE_DOWN, Turn, give_up
from bot.slack.answering.turns import attempt_of, conversation_queue
from bot.slack.door.workspace import event_workspace
from bot.slack.listeners.messages import DM_MAIN, is_person_talking
from bot.slack.output.surface import AnswerSurface
from bot.work import Job
from bot.work.recorder import Recorder

log = logging.getLogger(__name__)

KIND = "event"
CONVERSATIONAL = ("message", "app_mention")
# How long a delivery acked while the database was away is kept in memory, retried, before the
# thread is told: longer than a restart, and than PgBouncer's 15 s before it logs in again.
RECORD_PATIENCE = 60.0


def delivery_key(body: dict[str, Any], raw: bytes) -> str:
    """Slack's retries of one delivery share its event_id; a payload without one dedupes by content."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return f"event:{event_id}"
    return f"event:sha256:{hashlib.sha256(raw).hexdigest()[:40]}"


def worth_recording(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Messages only people's count (no listener answers the bot's own, edits or other bots');
    every other event type is recorded for its listener."""
    if event.get("type") == "message":
        return is_person_talking(event, bot_user_id)
    return True


def conversation_of(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(queue, person) of a message or mention: its conversation, and who asked."""
    event = body["event"]
    channel, ts = event.get("channel"), event.get("ts")
    if event.get("type") not in CONVERSATIONAL or not isinstance(channel, str) or not isinstance(ts, str):
        return None, None
    team = event_workspace(body)
    thread = event.get("thread_ts")
    if isinstance(thread, str) and thread:
        root = thread
    else:
        root = DM_MAIN if event.get("channel_type") == "im" else ts
    user = event.get("user")
    person = f"{team}:{user}" if isinstance(user, str) and user else None
    return conversation_queue(team, channel, root), person


class Deliveries:
    """What the front door calls for each signed `event_callback`.

    On the door's thread (`recorder` and `main_loop` given) it records through the door's own
    recorder and pool; an apology is posted from the main loop, whose Slack session it needs.
    """

    def __init__(
        self,
        rt: Runtime,
        recorder: Recorder | None = None,
        main_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.rt = rt
        self.recorder = recorder or rt.work.recorder
        self.main_loop = main_loop

    async def record(self, body: dict[str, Any], raw: bytes) -> None:
        """Record the delivery (durable when this returns), and the delivery is acked. A database
        that does not answer within the ack's time (a restart; behind PgBouncer, its wait before
        logging in again) is waited for after the ack; one that stays down is told in the thread,
        since posting needs no database."""
        event = body["event"]
        if not worth_recording(event, self.rt.bot_user_id):
            return
        queue, person = conversation_of(body)
        key = delivery_key(body, raw)
        try:
            await self.recorder.submit(KIND, key, body, queue=queue, person=person)
        except Exception as exc:  # DB errors share no class: sorted below
            if not database_unavailable(exc):
                raise
            log.warning(
                "database unavailable: a delivery is recorded once it is back (%s)", type(exc).__name__
            )
            if self.main_loop is None:
                self._keep_trying(body, key, queue, person)
            else:  # the main loop's tasks are drained at a stop, and its Slack session apologises
                self.main_loop.call_soon_threadsafe(self._keep_trying, body, key, queue, person)

    def _keep_trying(self, body: dict[str, Any], key: str, queue: str | None, person: str | None) -> None:
        self.rt.tasks.spawn(self._record_later(body, key, queue, person), name="record a delivery")

    async def _record_later(
        self, body: dict[str, Any], key: str, queue: str | None, person: str | None
    ) -> None:
        deadline = time.monotonic() + RECORD_PATIENCE
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self.rt.work.submit(KIND, key, body, queue=queue, person=person)
                log.info("a delivery was recorded once the database was back")
                return
            except Exception as exc:  # DB errors share no class: sorted below
                if not database_unavailable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    break
            delay = min(delay * 2, 5.0)
        event = body["event"]
        log.error("database unavailable: a delivery could not be recorded in %.0f s", RECORD_PATIENCE)
        if queue is not None and (event.get("type") == "app_mention" or event.get("channel_type") == "im"):
            await self._apologise(event)

    async def _apologise(self, event: dict[str, Any]) -> None:
        channel = str(event.get("channel", ""))
        thread = event.get("thread_ts") or (None if event.get("channel_type") == "im" else event.get("ts"))
        try:
            surface = AnswerSurface(self.rt.slack, channel, thread, team="", user="", native=False)
            await surface.fail(DATABASE_DOWN)
        except Exception:  # last words: nothing left to do
            log.exception("could not post the database apology either")


async def dispatch(app: AsyncApp, job: Job) -> None:
    """Hand a recorded delivery to Bolt's listeners, as Socket Mode does (the signature was
    checked when it arrived, and a redo may come long after its timestamp expired)."""
    await app.async_dispatch(AsyncBoltRequest(body=job.payload, mode="socket_mode"))


async def give_up_delivery(rt: Runtime, job: Job) -> None:
    """Out of attempts (or stale after one began): what an answer began to show says so."""
    event = job.payload.get("event") or {}
    channel, ts = event.get("channel"), event.get("ts")
    if job.queue is None or not isinstance(channel, str) or not isinstance(ts, str):
        return  # not a message: nothing was shown
    team = event_workspace(job.payload)
    install.serve(team)
    thread = event.get("thread_ts") or (None if event.get("channel_type") == "im" else ts)
    where = Turn(team, channel, str(event.get("user", "")), "", ts, thread or DM_MAIN, thread, "redo")
    await give_up(rt, where, attempt_of(job))


def register(rt: Runtime, app: AsyncApp) -> None:
    rt.work.kind(KIND, lambda job: dispatch(app, job), give_up=lambda job: give_up_delivery(rt, job))
