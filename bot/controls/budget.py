"""What a person may use: daily token caps (reserved before a run calls the model, bounding the
run that goes ahead, settled when it ends) and how many runs they may have in flight at once."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.controls.channel_config import Effective
    from bot.db.queries.usage import Spent
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

    remaining: int | None = None  # tokens this run may spend; None = no cap
    refusal: str | None = None
    reservation: int | None = None  # the hold to settle when the run ends (bot.db.queries.usage)
    held_up: bool = False  # refused only for what runs in flight hold: it may free up


def allowance(
    user_used: int,
    user_cap: int,
    channel_used: int,
    channel_cap: int,
    now: datetime,
    *,
    user_held: int = 0,
    channel_held: int = 0,
    most: int | None = None,
) -> Allowance:
    """Pure: the tightest of the two caps (0 = no cap), counting what runs in flight hold; a run
    gets at most `most` (its own token budget), so the rest stays for others."""
    # Refused only for what runs in flight hold (no cap used up by finished runs): may free up.
    held_up = not (user_cap and user_used >= user_cap) and not (channel_cap and channel_used >= channel_cap)
    left: list[int] = []
    if user_cap:
        if user_used + user_held >= user_cap:
            return Allowance(
                0,
                f"You have used your {user_cap:,} tokens for today here ({_so_far(user_used, user_held)}), "
                f"so I did not ask the model. Your allowance resets at {resets_in(now)}.",
                held_up=held_up,
            )
        left.append(user_cap - user_used - user_held)
    if channel_cap:
        if channel_used + channel_held >= channel_cap:
            return Allowance(
                0,
                f"This channel has used its {channel_cap:,} tokens for today "
                f"({_so_far(channel_used, channel_held)}), so I did not ask the model. "
                f"The allowance resets at {resets_in(now)}.",
                held_up=held_up,
            )
        left.append(channel_cap - channel_used - channel_held)
    if left and most is not None:
        left.append(most)
    return Allowance(min(left) if left else None)


def _so_far(used: int, held: int) -> str:
    return f"{used:,} so far" + (f", {held:,} more held by answers in progress" if held else "")


def daily_caps(rt: Runtime, here: Effective) -> tuple[int, int]:
    """(person, channel) tokens per day in this place: the channel's settings, else the operator's."""
    user_cap = here.user_daily_tokens if here.user_daily_tokens is not None else rt.settings.user_daily_tokens
    channel_cap = (
        here.channel_daily_tokens
        if here.channel_daily_tokens is not None
        else rt.settings.channel_daily_tokens
    )
    return user_cap, channel_cap


async def reserve(rt: Runtime, here: Effective, *, team: str, user: str, channel: str) -> Allowance:
    """Hold this run's tokens against today's caps before its first model call, atomically (one
    lock per person and channel, across processes), so concurrent runs cannot all spend the same
    allowance. The run may spend what it holds (min(AGENT_TOKEN_BUDGET, what is left)); `settle`
    releases the hold when it ends, its run row then counting instead. A hold older than twice
    AGENT_DEADLINE_SECONDS belongs to a process that died and is not counted.

    When only runs in flight hold the rest, wait for them (up to AGENT_DEADLINE_SECONDS, a run's
    own time limit) rather than refuse: they may leave some of it.
    """
    user_cap, channel_cap = daily_caps(rt, here)
    if not user_cap and not channel_cap:
        return Allowance()
    give_up_at = time.monotonic() + rt.settings.agent_deadline_seconds
    delay = 0.2
    while True:
        held = await _reserve_once(rt, user_cap, channel_cap, team=team, user=user, channel=channel)
        if not held.held_up or time.monotonic() >= give_up_at:
            return held
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def _reserve_once(
    rt: Runtime, user_cap: int, channel_cap: int, *, team: str, user: str, channel: str
) -> Allowance:
    now = datetime.now(UTC)

    def decide(person: Spent, place: Spent) -> Allowance:
        return allowance(
            person.used,
            user_cap,
            place.used,
            channel_cap,
            now,
            user_held=person.held,
            channel_held=place.held,
            most=rt.settings.agent_token_budget,
        )

    reserved = await rt.db.usage.reserve(
        team,
        user,
        channel,
        since=day_start(now),
        live_since=now - timedelta(seconds=2 * rt.settings.agent_deadline_seconds),
        tokens=lambda person, place: decide(person, place).remaining or 0,
    )
    verdict = decide(reserved.person, reserved.channel)
    return dataclasses.replace(verdict, reservation=reserved.id)


async def settle(rt: Runtime, held: Allowance) -> None:
    """The run has ended and its row records what it spent: release its hold."""
    if held.reservation is not None:
        await rt.db.usage.settle(held.reservation)
