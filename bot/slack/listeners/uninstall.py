"""`app_uninstalled` and `tokens_revoked`: stop all work for that workspace and forget its token.

Both are Slack's word that the bot may no longer act there, so every digest of the workspace is
paused (it would keep calling Slack with a dead token) and, in OAuth mode, its installation is
deleted: later work for it fails fast with NotInstalled instead of calling Slack.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack.door.workspace import event_workspace
from tools.toolkit.errors import InvariantError

log = logging.getLogger(__name__)

UNINSTALLED = "the app was uninstalled from this workspace or its token was revoked"


async def forget_workspace(rt: Runtime, team: str, enterprise: str | None) -> None:
    if rt.tokens is not None:
        await rt.tokens.store.async_delete_installation(enterprise_id=enterprise, team_id=team)
        rt.tokens.forget(team)
    for schedule in await rt.db.digests.all(team=team):
        if schedule.id is None:
            raise InvariantError("a stored digest schedule has no id")
        await rt.db.digests.pause(schedule.id, UNINSTALLED)
        if rt.digest_scheduler is not None:
            await rt.digest_scheduler.removed(schedule.id)
    log.warning("workspace %s: %s; its digests are paused", team, UNINSTALLED)


def register(app: AsyncApp, rt: Runtime) -> None:
    @app.event("app_uninstalled")
    async def on_uninstalled(body: dict[str, Any]) -> None:
        await forget_workspace(rt, event_workspace(body), body.get("enterprise_id"))

    @app.event("tokens_revoked")
    async def on_revoked(event: dict[str, Any], body: dict[str, Any]) -> None:
        tokens = event.get("tokens")
        if isinstance(tokens, dict) and tokens.get("bot"):  # user tokens: none are kept
            await forget_workspace(rt, event_workspace(body), body.get("enterprise_id"))
