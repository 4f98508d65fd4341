"""The `switchboard` command (also `python -m bot`): serve, clock, console, migrate, runs, doctor,
settings, eval, insights."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bot.db.schema import SchemaError
from bot.logging_setup import configure_logging
from bot.settings import ConfigError, Settings, load_settings

log = logging.getLogger("bot")


def package_version() -> str:
    try:
        return version("switchboard")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="A Slack bot that orchestrates tools. Without a command it serves Slack.",
        epilog="`python -m bot ...` is the same command. Settings come from the environment and .env.",
    )
    parser.add_argument("--version", action="version", version=f"switchboard {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="answer Slack (Socket Mode if SLACK_APP_TOKEN is set, else HTTP); default")
    sub.add_parser("clock", help="run only the digest scheduler and retention (one per deployment)")
    sub.add_parser("console", help="talk to the orchestrators in this terminal; no Slack needed")
    migrate = sub.add_parser("migrate", help="bring the database schema up to this version")
    migrate.add_argument(
        "--autogenerate",
        metavar="MESSAGE",
        help="for developers: write a new revision for what bot/db/models.py added",
    )
    runs = sub.add_parser("runs", help="recent runs (`runs list`), or one run's steps (`runs show N`)")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="list|show")
    listing = runs_sub.add_parser("list", help="the most recent runs")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    show = runs_sub.add_parser("show", help="one run: its steps with durations, tokens and errors")
    show.add_argument("run_id", type=int, metavar="N", help="the run's number, as in 'reference: run 42'")
    sub.add_parser("doctor", help="check settings, database, Slack token and model endpoint")
    reference = sub.add_parser("settings", help="every setting with its default, bounds and meaning")
    reference.add_argument(
        "--markdown",
        action="store_true",
        help="the whole page docs/reference/settings.md, not only the table",
    )
    evals = sub.add_parser("eval", help="run cases through the LLM and their workflows; compare them")
    evals.add_argument("cases", type=Path, metavar="CASES.yml")
    evals.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per case and path")
    evals.add_argument("--paths", default="llm,workflow", help="llm, workflow, or both (default)")
    tape = evals.add_mutually_exclusive_group()
    tape.add_argument("--record", type=Path, metavar="FILE", help="keep every tool result in FILE")
    tape.add_argument("--replay", type=Path, metavar="FILE", help="serve tool calls from FILE, never live")
    evals.add_argument("--json", action="store_true", help="the report as JSON instead of a table")
    evals.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")
    insights = sub.add_parser("insights", help="which LLM habits a workflow covers, and which could be one")
    insights.add_argument("--since", default="30d", help="how far back: 30d, 12h, 2w (default 30d)")
    insights.add_argument("--cases", type=Path, metavar="FILE", help="write candidate cases to FILE (YAML)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or "serve"
    if command == "console":
        from bot.console import main as console_main

        return console_main([])
    if command == "eval":
        from bot.ops.eval_suite import main as eval_main

        return eval_main(args)
    if command == "settings":  # needs no settings of its own: it describes them
        from bot.settings import reference_page, table_markdown

        sys.stdout.write(reference_page() if args.markdown else table_markdown())
        return 0
    if command == "doctor":
        from bot.ops.doctor import doctor

        return asyncio.run(doctor())
    try:
        settings = load_settings(
            need_slack=command in ("serve", "clock"), need_slack_signing=command == "serve"
        )
    except ConfigError as exc:
        print(f"Switchboard cannot start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if command == "insights":
        from bot.ops.insights_report import main as insights_main

        return _run(insights_main(settings, args))
    if command in ("migrate", "runs"):
        from bot.ops import operate

        job = (
            operate.migrate(settings, args.autogenerate)
            if command == "migrate"
            else operate.runs(settings, args)
        )
        return _run(job)
    if command == "clock" and not settings.run_scheduler:
        print("Switchboard clock: RUN_SCHEDULER is false, so there is nothing to run.", file=sys.stderr)
        return 2
    if not settings.llm_configured:
        log.warning(
            "No model configured (OPENAI_API_KEY / OPENAI_BASE_URL unset): conversations will say "
            "so, and slash-command workflows run without their LLM steps."
        )
    from bot.slack.server import clock, serve

    starter: Callable[[Settings], Coroutine[Any, Any, None]] = clock if command == "clock" else serve
    return _run(_as_exit_code(starter(settings)))


async def _as_exit_code(job: Coroutine[Any, Any, None]) -> int:
    await job
    return 0


def _run(job: Coroutine[Any, Any, int]) -> int:
    """Run to the end; a failure is one plain line for operators, the traceback goes to the log."""
    try:
        return asyncio.run(job)
    except KeyboardInterrupt:
        return 0
    except (SchemaError, ConfigError) as exc:
        print(f"Switchboard cannot start: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the CLI's boundary: a line, exit 1
        log.debug("stopped", exc_info=True)
        print(f"Switchboard stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
