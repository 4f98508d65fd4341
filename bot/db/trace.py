"""The database-backed RunTrace: every step of every run lands in the `step` table."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.db.engine import Database

log = logging.getLogger(__name__)

StatusSink = Callable[[str], Awaitable[None]]


class DbTrace:
    """Records steps on one run; forwards status lines to Slack (or wherever `on_status` says)."""

    def __init__(self, db: Database, run_id: int, on_status: StatusSink | None = None) -> None:
        self.db = db
        self.run_id = run_id
        self.on_status = on_status

    async def step(
        self,
        kind: str,
        name: str,
        *,
        arguments: str | None = None,
        output_chars: int = 0,
        error: str | None = None,
        duration_ms: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        log.info(
            "run %s %s %s %.0f ms%s",
            self.run_id,
            kind,
            name,
            duration_ms,
            f" error={error}" if error else "",
        )
        await self.db.runs.add_step(
            self.run_id,
            kind=kind,
            name=name[:100],
            arguments=arguments[:4000] if arguments else arguments,
            output_chars=output_chars,
            error=error,
            duration_ms=duration_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    async def status(self, text: str) -> None:
        if self.on_status is None:
            return
        try:
            await self.on_status(text)
        except Exception:  # a status line is a nicety; never fail a run over it
            log.warning("could not set status for run %s", self.run_id, exc_info=True)
