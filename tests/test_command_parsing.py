"""One parse of a slash command into a typed value, used by the Slack door and the console."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.work.command_run import AdminCall, HelpCall, ThreadSummaryCall, parse_slash
from orchestrators.workflows.arguments import SUMMARIZE_USAGE, WEATHER_USAGE, SummarizeArgs, UsageError
from orchestrators.workflows.command_registry import WorkflowCall


def test_admin_subcommands_keep_their_rest() -> None:
    assert parse_slash("/switchboard", "  Config set model gpt-x") == AdminCall("config", "set model gpt-x")
    assert parse_slash("/switchboard", "usage") == AdminCall("usage", "")


@pytest.mark.parametrize(
    ("command", "text"), [("/switchboard", ""), ("/switchboard", "what?"), ("/help", "x")]
)
def test_help(command: str, text: str) -> None:
    assert parse_slash(command, text) == HelpCall()


def test_summarize_with_nothing_in_a_thread_is_that_thread() -> None:
    assert parse_slash("/summarize", "  ", in_thread=True) == ThreadSummaryCall()
    outside = parse_slash("/summarize", "")
    assert isinstance(outside, WorkflowCall) and outside.args == SummarizeArgs(None, timedelta(hours=24))
    with_args = parse_slash("/summarize", "7d", in_thread=True)
    assert isinstance(with_args, WorkflowCall) and with_args.args.period == timedelta(days=7)


def test_workflow_arguments_arrive_typed() -> None:
    call = parse_slash("/weather", "  Karachi, ")
    assert isinstance(call, WorkflowCall)
    assert (call.name, call.command.workflow, call.args) == ("/weather", "weather_report", "Karachi")
    ask = parse_slash("/ask", " what   time is it? ")
    assert isinstance(ask, WorkflowCall) and ask.args == "what time is it?"


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("/weather", "12345", WEATHER_USAGE),
        ("/summarize", "#general soon", f"I don't understand `soon`. {SUMMARIZE_USAGE}"),
        ("/nope", "x", "I don't know `/nope`."),
    ],
)
def test_malformed_input_is_a_usage_error_for_the_person(command: str, text: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_slash(command, text)
    assert raised.value.user_message.startswith(message)
    assert str(raised.value) == raised.value.user_message
