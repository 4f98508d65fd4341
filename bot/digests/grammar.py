"""The /digest grammar and its triggers: pure functions, tested without Slack or a clock."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from orchestrators.workflows.arguments import ChannelRef, UsageError, parse_channel_ref, tokenize

DIGEST_USAGE = (
    "Usage: `/digest add #channel (daily HH:MM | weekdays HH:MM | weekly mon HH:MM | "
    'cron "m h dom mon dow") [Area/City] [from #source] [quiet]`, e.g. '
    "`/digest add #support-digest weekdays 09:00 Europe/Berlin from #support`. "
    "Also `/digest list`, `/digest remove <id>`, `/digest run <id>`."
)
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
FULL_DAYS = {d: d[:3] for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
CRON_DOW = {"0": "sun", "1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "7": "sun"}
HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MAX_CRON_CHARS = 100  # the digestschedule.cron column
MAX_ID = 2**31 - 1  # ids are 32-bit integers on Postgres; a larger number names no schedule
HORIZON = timedelta(days=366)  # a schedule must fire within a year; searches never look further


@dataclass(frozen=True)
class DigestAdd:
    target: ChannelRef
    source: ChannelRef | None
    cron: str  # minute hour day month day_of_week, weekdays as names (APScheduler's numbering differs)
    timezone: str | None
    quiet: bool
    description: str


@dataclass(frozen=True)
class DigestList:
    pass


@dataclass(frozen=True)
class DigestRemove:
    id: int


@dataclass(frozen=True)
class DigestRun:
    id: int


@dataclass(frozen=True)
class DigestHelp:
    pass


DigestCommand = DigestAdd | DigestList | DigestRemove | DigestRun | DigestHelp


def _fail(why: str) -> UsageError:
    return UsageError(f"{why}\n{DIGEST_USAGE}")


def _time(token: str | None) -> tuple[int, int]:
    m = HHMM.match(token or "")
    if not m:
        raise _fail(f"`{token or ''}` is not a time; use HH:MM from 00:00 to 23:59.")
    return int(m[1]), int(m[2])


def _dow_field(field: str) -> str:
    """Standard cron day-of-week (0 or 7 = Sunday) as names APScheduler reads unambiguously.

    Only day numbers are renamed, not the step of `*/2`; a number past 7 is refused.
    """

    def name(m: re.Match[str]) -> str:
        if m[0] not in CRON_DOW:
            raise _fail(f"`{m[0]}` is not a day of the week; use 0-7 (0 and 7 are Sunday) or mon..sun.")
        return CRON_DOW[m[0]]

    return re.sub(r"(?<![/\d])\d+", name, field.lower()) if field != "*" else "*"


def check_zone(name: str) -> str:
    try:
        return ZoneInfo(name).key
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(f"`{name}` is not a time zone; use the Area/City form, e.g. Europe/Berlin.") from None


def _schedule(tokens: list[str]) -> tuple[str, str, list[str]]:
    """(cron, description, rest) from the tokens after the target channel."""
    if not tokens:
        raise _fail("When should it run?")
    kind = tokens[0].lower()
    if kind == "daily":
        h, m = _time(tokens[1] if len(tokens) > 1 else None)
        return f"{m} {h} * * *", f"every day at {h:02d}:{m:02d}", tokens[2:]
    if kind == "weekdays":
        h, m = _time(tokens[1] if len(tokens) > 1 else None)
        return f"{m} {h} * * mon-fri", f"every weekday at {h:02d}:{m:02d}", tokens[2:]
    if kind == "weekly":
        day = (tokens[1] if len(tokens) > 1 else "").lower()
        day = FULL_DAYS.get(day, day)
        if day not in DAYS:
            raise _fail(f"`{tokens[1] if len(tokens) > 1 else ''}` is not a weekday; use mon..sun.")
        h, m = _time(tokens[2] if len(tokens) > 2 else None)
        return f"{m} {h} * * {day}", f"every {day.title()} at {h:02d}:{m:02d}", tokens[3:]
    if kind == "cron":
        expr = tokens[1] if len(tokens) > 1 else ""
        fields = expr.split()
        if len(fields) != 5:
            raise _fail('A cron schedule needs five fields in quotes, e.g. cron "0 9 * * 1-5".')
        if len(expr) > MAX_CRON_CHARS:
            raise _fail(f"That cron expression is {len(expr)} characters; keep it under {MAX_CRON_CHARS}.")
        cron = " ".join([*fields[:4], _dow_field(fields[4])])
        try:
            first = next_fire_times(cron, "UTC", datetime.now(UTC), 1)
        except ValueError as exc:
            raise _fail(f"`{expr}` is not a valid cron expression ({exc}).") from None
        if not first:
            raise _fail(f"`{expr}` never fires within a year (is that date real?), so it was not saved.")
        return cron, f'on cron "{" ".join(fields)}"', tokens[2:]
    raise _fail(f"`{tokens[0]}` is not a schedule; use daily, weekdays, weekly or cron.")


def parse_digest(text: str) -> DigestCommand:
    tokens = tokenize(text)
    if not tokens or tokens[0].lower() in ("help", "?"):
        return DigestHelp()
    verb, rest = tokens[0].lower(), tokens[1:]
    if verb == "list" and not rest:
        return DigestList()
    if verb in ("remove", "run"):
        digits = rest[0].lstrip("#") if len(rest) == 1 else ""
        if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_ID:
            raise _fail(f"`/digest {verb}` takes one schedule id, e.g. `/digest {verb} 3`.")
        number = int(digits)
        return DigestRemove(number) if verb == "remove" else DigestRun(number)
    if verb != "add":
        raise _fail(f"I don't know `/digest {tokens[0]}`.")
    target = parse_channel_ref(rest[0]) if rest else None
    if target is None:
        raise _fail("Name the channel to post in, e.g. #support-digest.")
    cron, description, rest = _schedule(rest[1:])
    zone, source, quiet = None, None, False
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.lower() == "from" and source is None and i + 1 < len(rest):
            source = parse_channel_ref(rest[i + 1])
            if source is None:
                raise _fail(f"`{rest[i + 1]}` is not a channel.")
            i += 2
            continue
        if token.lower() == "quiet" and not quiet:
            quiet = True
        elif zone is None and ("/" in token or token.upper() == "UTC"):
            zone = check_zone(token)
        else:
            raise _fail(f"I don't understand `{token}`.")
        i += 1
    return DigestAdd(target, source, cron, zone, quiet, description)


def make_trigger(cron: str, timezone: str, second: str = "0", end: datetime | None = None) -> CronTrigger:
    """A CronTrigger in the schedule's zone; `second` lets tests fire every second.

    `end` bounds a search: without it APScheduler walks up to the year 9999 for a date that
    never comes (31 February), holding the event loop for seconds.
    """
    minute, hour, day, month, dow = cron.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=dow,
        second=second,
        timezone=ZoneInfo(timezone),
        end_date=end,
    )


def fires(cron: str, timezone: str, at: datetime, second: str = "0") -> bool:
    """Whether a stored schedule fires within a year of `at` (so it is safe to give APScheduler)."""
    try:
        return bool(next_fire_times(cron, timezone, at, 1, second))
    except (ValueError, KeyError):
        return False


def canonical(fire_time: datetime) -> datetime:
    """One instant per wall-clock time: the repeated hour at a DST fall-back counts once."""
    return fire_time.replace(fold=0).astimezone(UTC)


def _after(moment: datetime) -> datetime:
    # Step in UTC: local arithmetic drops `fold` and would return the same fire time forever.
    return moment.astimezone(UTC) + timedelta(microseconds=1)


def next_fire_times(
    cron: str, timezone: str, after: datetime, count: int = 3, second: str = "0"
) -> list[datetime]:
    trigger = make_trigger(cron, timezone, second, end=after + HORIZON)
    out: list[datetime] = []
    previous = None
    now = after
    while len(out) < count:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        if not out or canonical(nxt) != canonical(out[-1]):
            out.append(nxt)
        previous, now = nxt, _after(nxt)
    return out


def previous_fire_time(cron: str, timezone: str, at: datetime, second: str = "0") -> datetime | None:
    """The latest fire time at or before `at` (the run a job is doing, or the last one missed)."""
    for window in (timedelta(minutes=2), timedelta(days=2), timedelta(days=9), timedelta(days=400)):
        if times := _times_between(cron, timezone, at - window, at, second):
            return times[-1]
    return None


def _times_between(cron: str, timezone: str, start: datetime, end: datetime, second: str) -> list[datetime]:
    trigger = make_trigger(cron, timezone, second, end=end)
    out: list[datetime] = []
    previous, now = None, start
    while (nxt := trigger.get_next_fire_time(previous, now)) is not None and nxt <= end:
        if not out or canonical(nxt) != canonical(out[-1]):
            out.append(nxt)
        previous, now = nxt, _after(nxt)
        if len(out) > 5_000:
            out = out[-1:]
    return out


def period_of(cron: str, timezone: str, fire_time: datetime, second: str = "0") -> timedelta:
    """How far back the first digest reaches: the gap since the previous fire time."""
    before = previous_fire_time(cron, timezone, fire_time - timedelta(microseconds=1), second)
    # Subtract in UTC: same-zone subtraction measures wall-clock time and misses DST hours.
    return fire_time.astimezone(UTC) - canonical(before) if before else timedelta(days=1)


def shortest_gap(cron: str, timezone: str, after: datetime, count: int = 60) -> timedelta | None:
    """The smallest gap between the next `count` fire times (None if it fires at most once)."""
    times = [t.astimezone(UTC) for t in next_fire_times(cron, timezone, after, count)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else None
