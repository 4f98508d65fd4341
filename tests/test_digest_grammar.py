"""The /digest grammar and its triggers: time zones, DST, weekdays."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.digests.grammar import (
    DigestAdd,
    DigestHelp,
    DigestList,
    DigestRemove,
    DigestRun,
    next_fire_times,
    parse_digest,
    period_of,
    previous_fire_time,
)
from orchestrators.workflows.arguments import ChannelRef, UsageError


def test_forms() -> None:
    add = parse_digest("add <#C3|digest> weekdays 09:00 Europe/Berlin from <#C2|support> quiet")
    assert add == DigestAdd(
        ChannelRef("C3", "digest"),
        ChannelRef("C2", "support"),
        "0 9 * * mon-fri",
        "Europe/Berlin",
        True,
        "every weekday at 09:00",
    )
    assert parse_digest("ADD #digest Daily 7:05").cron == "5 7 * * *"
    weekly = parse_digest("add #digest weekly Friday 17:30 quiet from #support")
    assert (weekly.cron, weekly.quiet, weekly.source) == ("30 17 * * fri", True, ChannelRef(None, "support"))
    assert parse_digest('add #d cron "0 9 * * 1-5" UTC').cron == "0 9 * * mon-fri"  # cron's Monday=1
    assert parse_digest("add #d cron “0 18 * * 0”").cron == "0 18 * * sun"
    assert parse_digest("list") == DigestList()
    assert parse_digest("remove 4") == DigestRemove(4)
    assert parse_digest("run #7") == DigestRun(7)
    assert parse_digest("") == DigestHelp()


@pytest.mark.parametrize(
    "text",
    [
        "add",
        "add #d",
        "add #d daily",
        "add #d daily 24:00",
        "add #d daily 9",
        "add #d hourly 09:00",
        "add #d weekly 09:00",
        "add #d weekly funday 09:00",
        'add #d cron "* * *"',
        'add #d cron "70 * * * *"',
        "add #d daily 09:00 Europe/Atlantis",
        "add #d daily 09:00 from",
        "add #d daily 09:00 from nowhere",
        "add #d daily 09:00 UTC UTC",
        "add notachannel daily 09:00",
        "remove",
        "remove 0",
        "remove x",
        "run 1 2",
        "list all",
        "frobnicate",
    ],
)
def test_junk_gets_usage_with_an_example(text: str) -> None:
    with pytest.raises(UsageError, match=r"e\.g\. `/digest add #support-digest weekdays 09:00"):
        parse_digest(text)


def test_weekdays_skip_the_weekend() -> None:
    friday = datetime(2026, 11, 27, 12, tzinfo=UTC)
    times = next_fire_times("0 9 * * mon-fri", "UTC", friday, 2)
    assert [t.strftime("%a %H:%M") for t in times] == ["Mon 09:00", "Tue 09:00"]
    assert period_of("0 9 * * mon-fri", "UTC", times[0]) == timedelta(days=3)
    assert period_of("0 9 * * *", "UTC", times[0]) == timedelta(days=1)


def test_time_zones() -> None:
    after = datetime(2026, 11, 24, 0, tzinfo=UTC)
    ny = next_fire_times("0 9 * * *", "America/New_York", after, 1)[0]
    assert ny.astimezone(UTC).hour == 14
    assert next_fire_times("0 9 * * *", "UTC", after, 1)[0].astimezone(UTC).hour == 9


def test_dst_spring_forward_fires_once_that_day() -> None:
    times = next_fire_times("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 3)
    utc = [t.astimezone(UTC) for t in times]
    assert [t.date().isoformat() for t in utc] == ["2026-03-29", "2026-03-30", "2026-03-31"]
    assert utc[0].hour == 1 and utc[1].hour == 0  # 02:30 does not exist on the 29th: 03:30 CEST


def test_dst_fall_back_fires_once() -> None:
    times = next_fire_times("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert [t.date().isoformat() for t in times] == ["2026-10-25", "2026-10-26", "2026-10-27"]
    assert period_of("30 2 * * *", "Europe/Berlin", times[1]) == timedelta(hours=25)


def test_previous_fire_time() -> None:
    monday = datetime(2026, 11, 23, 7, tzinfo=UTC)  # before Monday's 09:00 Berlin
    prev = previous_fire_time("0 9 * * mon-fri", "Europe/Berlin", monday)
    assert prev is not None and prev.strftime("%a %H:%M") == "Fri 09:00"
