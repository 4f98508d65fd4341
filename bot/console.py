"""`switchboard console`: the same orchestrators in a terminal, no Slack workspace needed.

The prompt is read in the main thread with GNU readline while the event loop is idle (nothing
else runs in the console), and each line is handled by one `Runner.run`. So Ctrl-C at the prompt
interrupts at once, Ctrl-C during a model call cancels just that question, a pasted line has no
4095-character limit (readline reads the terminal raw) and a multi-line paste, which readline
receives as one bracketed paste, is one question.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from bot.logging_setup import configure_logging
from bot.runtime import Runtime, create_runtime
from bot.settings import ConfigError, Settings, load_settings

PROMPT = "you> "
HELLO = (
    "Switchboard console. Plain lines go to the LLM orchestrator; `/weather Karachi`, "
    "`/research ...`, `/ask ...` run the code workflows. `exit` or Ctrl-D quits; Ctrl-C stops "
    "the current answer."
)
SLACK_ONLY = {
    "/digest": "/digest schedules summaries that are posted into Slack channels, so it works only in Slack.",
}
SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def slack_to_markdown(text: str) -> str:
    """Slack's link markup as a terminal can show it: <url|title> -> [title](url), <@U1> -> @U1."""

    def one(m: re.Match[str]) -> str:
        target, label = m[1], m[2]
        if target.startswith(("@", "#")):
            return f"{target[0]}{label or target[1:]}"
        if target.startswith("!"):
            return f"@{label or target[1:].split('^')[0]}"
        return f"[{label}]({target})" if label else target

    return SLACK_LINK.sub(one, text)


class ConsoleTrace:
    """Shows each step as it runs: tools with their arguments, model calls with their tokens."""

    def __init__(self, out: Console) -> None:
        self.out = out

    async def step(self, kind: str, name: str, **f: Any) -> None:
        took = f"{f.get('duration_ms', 0):.0f} ms"
        if kind == "tool":
            args = f.get("arguments") or "{}"
            result = f"error: {f['error']}" if f.get("error") else f"{f.get('output_chars', 0)} chars"
            self.out.print(f"  [dim]· tool {name} {args} -> {result} ({took})[/dim]", highlight=False)
        else:
            tokens = f"{f.get('prompt_tokens', 0)}+{f.get('completion_tokens', 0)} tokens"
            error = f" error: {f['error']}" if f.get("error") else ""
            self.out.print(f"  [dim]· model {name}: {tokens} ({took}){error}[/dim]", highlight=False)

    async def status(self, text: str) -> None:
        self.out.print(f"  [dim]… {text}[/dim]", highlight=False)


def read_line(interactive: bool) -> str | None:
    """The next question; None at end of input. Blocks the main thread: the loop is idle."""
    if interactive:
        try:
            return input(PROMPT)
        except EOFError:
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


class ConsoleSession:
    """One terminal conversation: its history, and how each kind of line is answered."""

    def __init__(self, rt: Runtime, out: Console) -> None:
        self.rt = rt
        self.out = out
        self.history: list[dict[str, Any]] = []

    def show(self, text: str) -> None:
        self.out.print(Markdown(slack_to_markdown(text)))

    async def handle(self, line: str) -> None:
        if line.startswith("/"):
            await self.command(line)
        else:
            await self.question(line)

    async def command(self, line: str) -> None:
        from bot.work.command_run import execute_text

        command, _, args = line.partition(" ")
        if command in SLACK_ONLY:
            self.out.print(SLACK_ONLY[command], highlight=False)
            return
        reply = await execute_text(self.rt, command, args, user="console", channel="console", team="console")
        self.show(reply.text)

    async def question(self, line: str) -> None:
        from bot.ops.doctor import explain_model_error
        from orchestrators.agent.loop import AgentError

        self.history.append({"role": "user", "content": line})
        ctx = self.rt.tool_context(ConsoleTrace(self.out), team="console", user="console", channel="console")
        try:
            tools = await self.rt.tools()  # with MCP tools (waits for their first connect)
            result = await self.rt.agent.run(self.history, ctx, registry=tools)
        except AgentError as exc:
            self.history.pop()
            self.out.print(f"[red]The model failed: {explain_model_error(exc, self.rt.settings)}[/red]")
            return
        except BaseException:
            self.history.pop()  # interrupted: the question was not answered, so it is not history
            raise
        self.history += result.messages
        self.show(result.text)
        self.out.print("")


def _settings() -> Settings | None:
    try:
        settings = load_settings(need_slack=False)
    except ConfigError as exc:
        print(f"Switchboard console cannot start: {exc}", file=sys.stderr)
        return None
    if not settings.llm_configured:
        print(
            "Switchboard console needs a model: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server such as Ollama).",
            file=sys.stderr,
        )
        return None
    return settings


def run_console(out: Console) -> int:
    settings = _settings()
    if settings is None:
        return 2
    configure_logging(settings, level="WARNING")  # step lines, not log lines, show the work
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (input() then edits lines and takes pastes of any length)
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        db_url = f"sqlite+aiosqlite:///{Path(tmp) / 'console.db'}"
        rt = runner.run(
            create_runtime(settings.model_copy(update={"database_url": db_url, "auto_migrate": True}))
        )
        rt.slack_available = False
        session = ConsoleSession(rt, out)
        out.print(HELLO)
        try:
            while True:
                try:
                    line = read_line(interactive)
                except KeyboardInterrupt:
                    out.print("")  # Ctrl-C at the prompt: a fresh prompt, as in a shell
                    continue
                if line is None:
                    break
                line = line.strip()
                if not line:
                    continue
                if line.lower() in ("exit", "quit"):
                    break
                if not interactive:
                    out.print(f"{PROMPT}{line}", highlight=False)
                try:
                    runner.run(session.handle(line))
                except KeyboardInterrupt:
                    out.print("[yellow]Stopped.[/yellow]")
        finally:
            runner.run(rt.close())
    return 0


def main(args: list[str]) -> int:
    """Entry point for `switchboard console`."""
    if args:
        print("usage: switchboard console", file=sys.stderr)
        return 2
    out = Console(highlight=False, soft_wrap=False)
    return run_console(out)
