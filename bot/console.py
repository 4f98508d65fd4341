"""`python -m bot console`: the same orchestrators in a terminal, no Slack workspace needed."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from bot.config import ConfigError, load_settings
from bot.logging_setup import configure_logging
from bot.runtime import create_runtime

PROMPT = "you> "
HELLO = (
    "Switchboard console. Plain lines go to the LLM orchestrator; `/weather Karachi`, "
    "`/research ...`, `/ask ...` run the code workflows. `exit` or Ctrl-D quits."
)


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


async def read_line(interactive: bool) -> str | None:
    if interactive:
        try:
            return await asyncio.to_thread(input, PROMPT)
        except EOFError:
            return None
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.rstrip("\n") if line else None


async def run_console(out: Console) -> int:
    try:
        settings = load_settings(need_slack=False)
    except ConfigError as exc:
        print(f"Switchboard console cannot start: {exc}", file=sys.stderr)
        return 2
    if not settings.llm_configured:
        print(
            "Switchboard console needs a model: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server such as Ollama).",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings, level="WARNING")
    from dataclasses import replace

    from bot.commands import execute

    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(settings, database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'console.db'}")
        rt = await create_runtime(settings)
        rt.slack_available = False
        history: list[dict[str, Any]] = []
        interactive = sys.stdin.isatty()
        out.print(HELLO)
        try:
            while (line := await read_line(interactive)) is not None:
                line = line.strip()
                if not line:
                    continue
                if line.lower() in ("exit", "quit"):
                    break
                if not interactive:
                    out.print(f"{PROMPT}{line}", highlight=False)
                if line.startswith("/"):
                    command, _, args = line.partition(" ")
                    reply = await execute(
                        rt, command, args, user="console", channel="console", team="console"
                    )
                    out.print(Markdown(reply.text))
                    continue
                history.append({"role": "user", "content": line})
                ctx = rt.tool_context(ConsoleTrace(out), team="console", user="console", channel="console")
                try:
                    result = await rt.agent.run(history, ctx, registry=rt.tools())
                except Exception as exc:
                    out.print(f"[red]The model failed: {exc}[/red]")
                    history.pop()
                    continue
                history += result.messages
                out.print(Markdown(result.text))
                out.print("")
        finally:
            await rt.close()
    return 0


def main(args: list[str]) -> int:
    """Entry point for `python -m bot console`."""
    if args:
        print("usage: python -m bot console", file=sys.stderr)
        return 2
    out = Console(highlight=False, soft_wrap=False)
    return asyncio.run(run_console(out))
