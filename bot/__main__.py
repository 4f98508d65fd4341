"""`python -m bot` runs the bot; `python -m bot console` runs it in the terminal."""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.config import ConfigError, load_settings
from bot.logging_setup import configure_logging

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "console":
        from bot.console import main as console_main

        return console_main(args[1:])
    is_clock = bool(args) and args[0] == "clock"
    try:
        settings = load_settings(need_slack_signing=not is_clock)
    except ConfigError as exc:
        print(f"Switchboard cannot start: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if not settings.llm_configured:
        log.warning(
            "No model configured (OPENAI_API_KEY / OPENAI_BASE_URL unset): conversations will say "
            "so, and slash-command workflows run without their LLM steps."
        )
    from bot.slack.server import clock, serve

    if is_clock and not settings.run_scheduler:
        print("Switchboard clock: RUN_SCHEDULER is false, so there is nothing to run.", file=sys.stderr)
        return 2
    try:
        asyncio.run(clock(settings) if is_clock else serve(settings))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a plain line for operators; the traceback goes to the log
        log.debug("start failed", exc_info=True)
        print(f"Switchboard stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
