"""Logging with secrets redacted, so a token pasted into an error never reaches the log."""

from __future__ import annotations

import logging
import re

from bot.config import Settings

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


def configure_logging(settings: Settings | None, level: str = "INFO") -> None:
    secrets = []
    if settings is not None:
        level = settings.log_level
        secrets = [
            settings.slack_bot_token,
            settings.slack_signing_secret or "",
            settings.slack_app_token or "",
            settings.openai_api_key or "",
        ]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(EscapeNewlines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
