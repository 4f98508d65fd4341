"""Issue 14: the console in a real pseudo-terminal (pexpect): long pastes, multi-line pastes,
Ctrl-C at the prompt and during a model call, Slack-only commands, Slack link markup, and model
errors that name the setting to fix."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply

ROOT = Path(__file__).resolve().parents[1]
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"  # a terminal's bracketed paste markers


@contextmanager
def console(tmp_path: Path, base_url: str) -> Iterator[pexpect.spawn]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_", "LOG_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-console-pty-test",
        "OPENAI_BASE_URL": base_url,
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "INFO",  # the console must stay quiet anyway
        "TERM": "xterm",
        "COLUMNS": "120",
        "INPUTRC": "/dev/null",
    }
    child = pexpect.spawn(
        sys.executable, ["-m", "bot", "console"], cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120
    )
    child.setwinsize(40, 120)
    try:
        child.expect_exact("you> ")
        yield child
    finally:
        if child.isalive():
            child.sendeof()
            child.expect(pexpect.EOF)
        child.close()


def at_the_prompt(child: pexpect.spawn, timeout: float = 120.0) -> None:
    """Until the console blocks reading the terminal. CPython's readline prints the prompt, then
    enters select(): a Ctrl-C in between is noticed only at the next key. A person cannot hit that
    window; a test sending Ctrl-C as the prompt appears does, on a busy machine. Linux only (the
    main thread's wait channel, where select() sleeps); elsewhere it returns at once."""
    wchan = Path(f"/proc/{child.pid}/wchan")
    deadline = time.monotonic() + timeout
    while wchan.exists() and "poll" not in wchan.read_text():
        assert time.monotonic() < deadline, "the console never waited for input"
        time.sleep(0.01)


async def in_thread(fn, *args):
    """pexpect blocks; the fake model server runs on this test's event loop."""
    return await asyncio.to_thread(fn, *args)


@pytest.fixture
async def model() -> FakeOpenAI:
    fake = FakeOpenAI()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_pasted_line_longer_than_4095_characters_arrives_whole(model, tmp_path) -> None:
    question = "x" * 6000 + " end"
    model.script(Reply(content="got it all"))

    def run() -> str:
        with console(tmp_path, model.base_url) as child:
            child.send(PASTE_START + question + PASTE_END + "\r")
            child.expect_exact("got it all")
            child.expect_exact("you> ")
            return child.before

    await in_thread(run)
    assert model.requests[0]["messages"][-1]["content"] == question


async def test_a_multi_line_paste_is_one_question(model, tmp_path) -> None:
    model.script(Reply(content="one answer"))

    def run() -> None:
        with console(tmp_path, model.base_url) as child:
            child.send(PASTE_START + "first line\nsecond line\nthird line" + PASTE_END + "\r")
            child.expect_exact("one answer")
            child.expect_exact("you> ")

    await in_thread(run)
    assert len(model.requests) == 1
    assert model.requests[0]["messages"][-1]["content"] == "first line\nsecond line\nthird line"


async def test_ctrl_c_at_the_prompt_and_during_a_model_call(model, tmp_path) -> None:
    model.script(Reply(content="too late", delay=20), Reply(content="after the interrupt"))

    def run() -> str:
        with console(tmp_path, model.base_url) as child:
            at_the_prompt(child)
            child.sendintr()  # at the prompt: a new prompt at once, no traceback
            child.expect_exact("you> ")
            child.sendline("slow question")
            while not model.requests:
                time.sleep(0.02)
            child.sendintr()  # during the model call: that answer stops, the console stays
            child.expect_exact("Stopped.")
            child.expect_exact("you> ")
            child.sendline("next question")
            child.expect_exact("after the interrupt")
            child.expect_exact("you> ")
            child.sendline("exit")
            child.expect(pexpect.EOF)
            return child.before

    rest = await in_thread(run)
    assert "Traceback" not in rest and "too late" not in rest
    # the interrupted question is not history: the next request does not carry it unanswered
    assert [m["content"] for m in model.requests[1]["messages"] if m["role"] == "user"] == ["next question"]


async def test_slack_only_commands_link_markup_and_quiet_logs(model, tmp_path) -> None:
    model.script(Reply(content="See <https://example.com/docs|the docs> and ask <@U123>."))

    def run() -> str:
        with console(tmp_path, model.base_url) as child:
            child.sendline("/digest add #general daily 09:00")
            child.expect_exact("works only in Slack")
            child.expect_exact("you> ")
            child.sendline("links please")
            child.expect_exact("you> ")
            return child.before

    out = await in_thread(run)
    assert "<https://" not in out and "the docs" in out and "@U123" in out
    assert " INFO " not in out  # LOG_LEVEL=INFO does not turn the console into a log


async def test_model_errors_name_the_setting_and_hint_at_v1(model, tmp_path) -> None:
    without_v1 = model.url  # the fake serves /v1/chat/completions: this base URL gets a 404

    def run(base_url: str) -> str:
        with console(tmp_path, base_url) as child:
            child.sendline("hello")
            child.expect_exact("you> ")
            return child.before

    out = " ".join((await in_thread(run, without_v1)).split())
    assert "OPENAI_BASE_URL" in out and "404" in out and "/v1" in out, out
    closed = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    out = " ".join((await in_thread(run, closed)).split())
    assert "cannot reach the model endpoint at http://127.0.0.1:9/v1 (OPENAI_BASE_URL)" in out, out
