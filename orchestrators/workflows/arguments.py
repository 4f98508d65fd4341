"""Slash-command arguments as pure functions: channel references, periods, quoting, junk."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from tools.parsing import period
from tools.toolkit.errors import UserFacingError

WEATHER_USAGE = "Usage: `/weather <place>`, e.g. `/weather Karachi`"
SUMMARIZE_USAGE = "Usage: `/summarize [#channel] [24h|7d|<N>h|<N>d]`, e.g. `/summarize #general 7d`"
RESEARCH_USAGE = "Usage: `/research <question>`, e.g. `/research what changed in Python 3.14?`"
ASK_USAGE = "Usage: `/ask <question>`, e.g. `/ask what time is it in Tokyo?`"

QUOTES = {"“": '"', "”": '"', "‘": "'", "’": "'"}
CHANNEL_REF = re.compile(r"^<#(?P<id>[CG][A-Z0-9]+)(?:\|(?P<name>[^>]*))?>$")
BARE_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
CHANNEL_NAME = re.compile(r"^#(?P<name>[a-z0-9][a-z0-9._-]{0,79})$")
MAX_QUESTION = 2_000


class UsageError(UserFacingError, ValueError):
    """Bad input; the message is a short line for the user, with a correct example."""


@dataclass(frozen=True)
class ChannelRef:
    id: str | None
    name: str | None

    @property
    def label(self) -> str:
        return f"#{self.name}" if self.name else f"<#{self.id}>"


def tokenize(text: str) -> list[str]:
    """Split on whitespace, keeping "quoted phrases"; an unbalanced quote is just a character."""
    for fancy, plain in QUOTES.items():
        text = text.replace(fancy, plain)
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] in "\"'":
            end = text.find(text[i], i + 1)
            if end != -1:
                tokens.append(text[i + 1 : end])
                i = end + 1
                continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def parse_channel_ref(token: str) -> ChannelRef | None:
    """`<#C123|general>` (what Slack sends with should_escape), `#general`, or a bare ID."""
    token = token.strip()
    if m := CHANNEL_REF.match(token):
        return ChannelRef(m["id"], m["name"] or None)
    if BARE_ID.match(token):
        return ChannelRef(token, None)
    if m := CHANNEL_NAME.match(token.lower()):
        return ChannelRef(None, m["name"])
    return None


def parse_period(token: str) -> timedelta:
    """`90m`, `24h`, `24 h`, `7d`, `2w`: between 1 minute and 90 days (the grammar tools use too)."""
    try:
        return period.parse_period(token)
    except period.PeriodError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class SummarizeArgs:
    channel: ChannelRef | None
    period: timedelta


def parse_summarize(text: str) -> SummarizeArgs:
    channel: ChannelRef | None = None
    span: timedelta | None = None
    tokens = tokenize(text)
    while tokens:
        token = tokens.pop(0)
        if token.isdigit() and tokens and period.is_period(token + tokens[0]):
            token += tokens.pop(0)  # "24 h": a number and its unit, spaced apart
        ref = parse_channel_ref(token)
        if ref is not None and channel is None:
            channel = ref
        elif period.is_period(token) and span is None:
            span = parse_period(token)
        else:
            raise UsageError(f"I don't understand `{token}`. {SUMMARIZE_USAGE}")
    return SummarizeArgs(channel, span or timedelta(hours=24))


def parse_place(text: str) -> str:
    place = " ".join(tokenize(text)).strip(" ,.")
    if not place or not any(c.isalpha() for c in place) or len(place) > 100:
        raise UsageError(WEATHER_USAGE)
    return place


def parse_question(text: str, usage: str) -> str:
    question = " ".join(text.split())
    if not question:
        raise UsageError(usage)
    if len(question) > MAX_QUESTION:
        raise UsageError(f"That question is {len(question)} characters; keep it under {MAX_QUESTION}.")
    return question


def describe_period(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    for size, word in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {word}" + ("s" if n != 1 else "")
    return f"{seconds} seconds"
