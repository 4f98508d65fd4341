"""Logging with secrets redacted, so a token pasted into an error never reaches the log, and
without what people wrote unless LOG_MESSAGE_TEXT=true (logs travel further than the database:
collectors, support tickets, screenshots)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from bot.settings import Settings

# Below INFO these log whole request and response bodies: messages, prompts, answers, SQL values.
CHATTY_LIBRARIES = (
    "slack_bolt",
    "slack_sdk",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "aiohttp",
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "mcp",
)
_log_message_text = False  # set once by configure_logging


def message_text(text: object) -> str:
    """What a log line may show of text people wrote, or that a model or tool made from it (an
    answer, a tool's error echoing its arguments): the text itself only with LOG_MESSAGE_TEXT=true,
    else its length. The run's steps keep the whole text in the database either way."""
    value = str(text)
    return value if _log_message_text else f"[{len(value)} characters]"


class DropLibraryDebug(logging.Filter):
    """The chatty libraries' records below INFO, which carry message text in their bodies."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in CHATTY_LIBRARIES)


TOKEN_PATTERN = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|sk-[A-Za-z0-9_-]{8,})")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return TOKEN_PATTERN.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class EscapeNewlines(logging.Filter):
    """One record, one line: a newline in a logged value (a payload, a model's text) cannot forge
    a log line. Tracebacks keep their lines; they come from our code, not from input."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n" in message or "\r" in message:
            record.msg, record.args = message.replace("\r", "\\r").replace("\n", "\\n"), None
        return True


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line, for log collectors (Loki, CloudWatch, Datadog)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class DropBoltTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself and then warns, on every start,
    that the client we pass wins; that is what we want, so the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def configure_logging(settings: Settings | None, level: str | None = None) -> None:
    """Logging for the whole process; `level` overrides LOG_LEVEL (the console keeps it quiet)."""
    global _log_message_text
    _log_message_text = settings is not None and settings.log_message_text
    secrets = []
    log_format = "text"
    if settings is not None:
        level = level or settings.log_level
        log_format = settings.log_format
        secrets = settings.secrets()
    handler = logging.StreamHandler()
    if not _log_message_text:
        handler.addFilter(DropLibraryDebug())  # first: dropped records are never formatted
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(EscapeNewlines())  # JSON escapes newlines itself
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(DropBoltTokenWarning())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or "INFO")
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
