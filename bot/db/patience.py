"""Whether this task's database work may wait out an outage: the pool and `retrying` ride out a
restart patiently, but a health check, `doctor` and the ack path ask about now, and are told at
once that the database is down."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

IMPATIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("IMPATIENT", default=False)


@contextmanager
def impatient() -> Iterator[None]:
    """Within this block a refused connection is reported at once, not waited out."""
    token = IMPATIENT.set(True)
    try:
        yield
    finally:
        IMPATIENT.reset(token)
