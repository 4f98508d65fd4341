"""The one family of errors Switchboard raises on purpose.

Every project exception derives from `SwitchboardError`, through one of the families below, so a
boundary can tell "ours, and we know what to say" from a bug, and so what a person in Slack is
told (`user_message`) stays apart from the detail that goes to the log (`str(exc)`).
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

SORRY = "Sorry, something went wrong on my side. Please try again in a moment."


class SwitchboardError(Exception):
    """An error of ours. `user_message` is what a person may be told; `str()` is the detail."""

    user_message: str = SORRY

    def __init__(self, *args: object, user_message: str | None = None) -> None:
        super().__init__(*args)
        if user_message is not None:
            self.user_message = user_message


class UserFacingError(SwitchboardError):
    """The message is the sentence for whoever asked (a person, or the model calling a tool):
    bad input, a refusal, a limit. `user_message` and `str()` are the same text."""

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(message, user_message=message if user_message is None else user_message)


class ConfigurationError(SwitchboardError):
    """The operator's set-up is wrong (a setting, a file, the schema): the message says what to fix.
    A person in Slack is told only that the bot is not set up to do it."""

    user_message = "Sorry, I'm not set up correctly to do that. The person running me has been told."


class ServiceError(SwitchboardError):
    """A service the bot depends on (the model, Slack, a workspace's installation) failed."""

    user_message = "Sorry, a service I depend on did not answer. Please try again in a moment."


class WorkInterrupted(SwitchboardError):
    """Durable work must stop: another process holds it now, or its commit's outcome is unknown.
    The work engine handles these; a person is never told about them."""


class InvariantError(SwitchboardError):
    """A state the code rules out happened (a bug): raised instead of `assert`, which `python -O`
    strips. The person gets the generic apology; the log gets the detail."""


def user_message(exc: BaseException | None, default: str = SORRY) -> str:
    """What a person may be told about `exc`: its family's words, or `default` for anything else."""
    return exc.user_message if isinstance(exc, SwitchboardError) else default


def present(value: T | None, what: str) -> T:
    """`value`, which the code's logic guarantees is set (a saved row's id, a pipe asked for):
    an explicit check in place of `assert value is not None`, kept under `python -O`."""
    if value is None:
        raise InvariantError(f"{what} is missing")
    return value
