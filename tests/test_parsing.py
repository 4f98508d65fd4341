"""Slash-command argument parsing: pure functions, junk included."""

from datetime import timedelta

import pytest

from orchestrators.workflows.arguments import (
    ChannelRef,
    SummarizeArgs,
    UsageError,
    parse_channel_ref,
    parse_period,
    parse_place,
    parse_question,
    parse_summarize,
    tokenize,
)
from tools.read_channel import period_seconds
from tools.toolkit.registry import ToolError


def test_tokenize_quotes() -> None:
    assert tokenize('add "New York" now') == ["add", "New York", "now"]
    assert tokenize("“São Paulo” ‘x y’") == ["São Paulo", "x y"]
    assert tokenize('unbalanced "quote here') == ["unbalanced", '"quote', "here"]
    assert tokenize("  ") == []


@pytest.mark.parametrize(
    ("token", "ref"),
    [
        ("<#C0123ABCD|general>", ChannelRef("C0123ABCD", "general")),
        ("<#C0123ABCD>", ChannelRef("C0123ABCD", None)),
        ("<#G0123ABCD|>", ChannelRef("G0123ABCD", None)),
        ("#Support-Team", ChannelRef(None, "support-team")),
        ("C0123ABCDE", ChannelRef("C0123ABCDE", None)),
        ("general", None),
        ("<@U123>", None),
        ("#", None),
        ("7d", None),
    ],
)
def test_channel_refs(token: str, ref: ChannelRef | None) -> None:
    assert parse_channel_ref(token) == ref


def test_periods() -> None:
    assert parse_period("24h") == timedelta(hours=24)
    assert parse_period("7D") == timedelta(days=7)
    assert parse_period("90m") == timedelta(minutes=90)
    assert parse_period("2w") == timedelta(weeks=2)
    for bad in ("0m", "91d", "yesterday", "7", "h", "-1d", "1.5h"):
        with pytest.raises(UsageError):
            parse_period(bad)


@pytest.mark.parametrize(
    ("written", "span"), [("90min", timedelta(minutes=90)), ("24 h", timedelta(hours=24))]
)
def test_commands_and_tools_read_a_period_the_same_way(written: str, span: timedelta) -> None:
    """/summarize and read_channel once disagreed on these two; they share one parser now."""
    assert parse_period(written) == span
    assert parse_summarize(f"#general {written}") == SummarizeArgs(ChannelRef(None, "general"), span)
    assert period_seconds(written) == span.total_seconds()


def test_a_bad_period_is_refused_in_the_words_of_each_door() -> None:
    with pytest.raises(UsageError, match="between 1 minute and 90 days"):
        parse_summarize("400 d")
    with pytest.raises(ToolError, match="since must look like 90m, 24h or 7d, not 'yesterday'"):
        period_seconds("yesterday")
    with pytest.raises(ToolError, match="since must be between 1 minute and 90 days"):
        period_seconds("0 m")


def test_summarize_args() -> None:
    assert parse_summarize("") == SummarizeArgs(None, timedelta(hours=24))
    assert parse_summarize("7d <#C1X|general>") == SummarizeArgs(
        ChannelRef("C1X", "general"), timedelta(days=7)
    )
    assert parse_summarize("#random 3h").channel == ChannelRef(None, "random")
    for junk in ("#a #b", "7d 24h", "please", "#general 7d extra", "400d"):
        with pytest.raises(UsageError):
            parse_summarize(junk)


def test_place_and_question() -> None:
    assert parse_place('  "Karachi" ') == "Karachi"
    assert parse_place("New York,") == "New York"
    for junk in ("", "   ", "12345", "x" * 101):
        with pytest.raises(UsageError, match="/weather"):
            parse_place(junk)
    assert parse_question("  what   changed? ", "u") == "what changed?"
    with pytest.raises(UsageError, match="usage"):
        parse_question("", "usage")
    with pytest.raises(UsageError, match="under 2000"):
        parse_question("x" * 2001, "u")
