"""The one period grammar ("90m", "90min", "24h", "24 h", "7d", "2w") for commands and tools alike.

`/summarize 24 h` and the model's `read_channel(since="90min")` mean the same span; one parser
keeps them from drifting apart.
"""

from __future__ import annotations

import re
from datetime import timedelta

from tools.toolkit.errors import UserFacingError

PERIOD = re.compile(r"^(?P<n>\d{1,4})\s*(?P<unit>min|m|h|d|w)$")
UNIT = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SHORTEST = timedelta(minutes=1)
LONGEST = timedelta(days=90)
FORMS = "90m, 24h, 7d or 2w"


class PeriodError(UserFacingError, ValueError):
    """Not a period, or one out of range; the message says which, for a person or the model."""


def is_period(text: str) -> bool:
    """Whether `text` is written as a period (in range or not)."""
    return PERIOD.match(text.strip().lower()) is not None


def parse_period(text: str) -> timedelta:
    """A period between one minute and 90 days; a number and its unit may be spaced apart."""
    m = PERIOD.match(text.strip().lower())
    if not m:
        raise PeriodError(f"`{text}` is not a period; use forms like {FORMS}")
    period = timedelta(**{UNIT[m["unit"]]: int(m["n"])})
    if not SHORTEST <= period <= LONGEST:
        raise PeriodError("The period must be between 1 minute and 90 days")
    return period
