"""The recovery sweep: work a dead process left (queued turns, command jobs) is taken over.

Runs in every web process, at start and then every third of WORK_LEASE_SECONDS, so after a
kill -9 the survivors, or the restarted process, redo the work once its lease has lapsed.
"""

from __future__ import annotations

import asyncio
import logging

from bot.runtime import Runtime
from bot.slack.command_jobs import recover_commands
from bot.slack.listeners.commands import RUNNERS
from bot.slack.turns import TurnRecovery

log = logging.getLogger(__name__)

MIN_SWEEP_SECONDS = 0.2


async def recover_once(rt: Runtime, turns: TurnRecovery) -> None:
    """One sweep; a failure (the database is down) is logged and the next sweep tries again."""
    try:
        await turns.sweep()
        await recover_commands(rt, RUNNERS)
    except Exception:
        log.exception("the recovery sweep failed")


async def start_recovery(rt: Runtime) -> asyncio.Task[None]:
    """The first sweep before the process takes requests (its work is tracked), then a loop."""
    turns = TurnRecovery(rt)
    await recover_once(rt, turns)
    return asyncio.get_running_loop().create_task(_recover_forever(rt, turns), name="recovery")


async def _recover_forever(rt: Runtime, turns: TurnRecovery) -> None:
    every = max(MIN_SWEEP_SECONDS, rt.settings.work_lease_seconds / 3)
    while True:
        await asyncio.sleep(every)
        await recover_once(rt, turns)
