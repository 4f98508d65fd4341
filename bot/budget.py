"""What a person may use: daily token caps (checked before a run calls the model, and bounding
the run that goes ahead) and how many runs they may have in flight at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.channel_config import Effective
    from bot.runtime import Runtime


def day_start(now: datetime) -> datetime:
    """Caps are per UTC day: one clock for everyone, so "resets at" means the same to all."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def resets_in(now: datetime) -> str:
    """`00:00 UTC, in 3 h 12 min`."""
    left = day_start(now) + timedelta(days=1) - now.astimezone(UTC)
    hours, minutes = divmod(max(1, int(left.total_seconds() // 60)), 60)
    return f"00:00 UTC, in {hours} h {minutes} min" if hours else f"00:00 UTC, in {minutes} min"


@dataclass(frozen=True)
class Allowance:
    """What a run may spend: `refusal` set when a cap is already used up."""

    remaining: int | None = None  # tokens left under the tightest cap; None = no cap
    refusal: str | None = None


def allowance(user_used: int, user_cap: int, channel_used: int, channel_cap: int, now: datetime) -> Allowance:
    """Pure: the tightest of the two caps (0 = no cap)."""
    left: list[int] = []
    if user_cap:
        if user_used >= user_cap:
            return Allowance(
                0,
                f"You have used your {user_cap:,} tokens for today here ({user_used:,} so far), so I "
                f"did not ask the model. Your allowance resets at {resets_in(now)}.",
            )
        left.append(user_cap - user_used)
    if channel_cap:
        if channel_used >= channel_cap:
            return Allowance(
                0,
                f"This channel has used its {channel_cap:,} tokens for today ({channel_used:,} so far), "
                f"so I did not ask the model. The allowance resets at {resets_in(now)}.",
            )
        left.append(channel_cap - channel_used)
    return Allowance(min(left) if left else None)


async def check(rt: Runtime, here: Effective, *, team: str, user: str, channel: str) -> Allowance:
    """The allowance of one run by `user` in `channel`, from today's recorded runs."""
    user_cap = here.user_daily_tokens if here.user_daily_tokens is not None else rt.settings.user_daily_tokens
    channel_cap = (
        here.channel_daily_tokens
        if here.channel_daily_tokens is not None
        else rt.settings.channel_daily_tokens
    )
    if not user_cap and not channel_cap:
        return Allowance()
    now = datetime.now(UTC)
    since = day_start(now)
    user_used = (await rt.db.usage.totals(team, since, user=user)).tokens if user_cap else 0
    channel_used = (await rt.db.usage.totals(team, since, channel=channel)).tokens if channel_cap else 0
    return allowance(user_used, user_cap, channel_used, channel_cap, now)


def busy_refusal(cap: int) -> str:
    answers = "answer" if cap == 1 else "answers"
    return (
        f"You already have {cap} {answers} in progress, the most I work on for one person at a time, "
        "and none finished while this message waited. Please send it again when one is done."
    )


async def run_slot(rt: Runtime, *, team: str, user: str) -> str | None:
    """Wait until `user` has fewer runs in flight than USER_MAX_CONCURRENT_RUNS; None when a slot
    is free, a refusal if none frees within AGENT_DEADLINE_SECONDS (a run's own time limit).

    Runs older than twice that deadline are not counted: a process that died left them
    `running`, and no live run lasts that long. Two runs starting in the same instant may both
    take the last slot; the cap bounds load, it is not a lock.
    """
    cap = rt.settings.user_max_concurrent_runs
    if not cap:
        return None
    patience = rt.settings.agent_deadline
    give_up_at = time.monotonic() + patience
    delay = 0.2
    while True:
        since = datetime.now(UTC) - timedelta(seconds=2 * patience)
        if await rt.db.runs.running_for(team, user, since) < cap:
            return None
        if time.monotonic() >= give_up_at:
            return busy_refusal(cap)
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)
