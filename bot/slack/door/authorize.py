"""Which token serves a request, the bot token verified once per process instead of per event.

Bolt's own single-workspace authorization calls auth.test on the first request and keeps the
answer, but a cold burst of requests all find nothing kept and each call it (60 mentions, 61
auth.test). Here the answer identify() got at start is reused (Runtime.bot_identity), and in OAuth
mode each installation's token is verified once per process, concurrent first requests included.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize, AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext

if TYPE_CHECKING:
    from bot.runtime import Runtime


class VerifiedBotToken(AsyncAuthorize):
    """Single-workspace mode: every request is served with SLACK_BOT_TOKEN, as Bolt would, from
    the one auth.test the process makes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        **_: Any,
    ) -> AuthorizeResult | None:
        auth = await self.rt.bot_identity()
        return AuthorizeResult(  # the fields Bolt's single-team authorization fills
            enterprise_id=auth.get("enterprise_id"),
            team_id=auth.get("team_id"),
            bot_id=auth.get("bot_id"),
            bot_user_id=auth.get("user_id"),
            bot_token=self.rt.settings.slack_bot_token,
            user_id=user_id,
            bot_scopes=auth.headers.get("x-oauth-scopes"),
        )


class VerifiedInstallations(AsyncAuthorize):
    """OAuth mode: Bolt's installation-store authorization with its per-token cache on, so each
    installation's token gets one auth.test per process. Until an installation has been verified,
    its requests take turns, so a cold burst waits for that one call instead of each making it.
    The installation is still looked up on every request: an uninstalled workspace is refused at
    once."""

    def __init__(self, inner: AsyncAuthorize) -> None:
        if isinstance(inner, AsyncInstallationStoreAuthorize):
            inner.cache_enabled = True
        self.inner = inner
        self._verified: set[tuple[str | None, str | None]] = set()
        self._first: dict[tuple[str | None, str | None], asyncio.Lock] = {}

    async def __call__(self, **args: Any) -> AuthorizeResult | None:
        """Bolt's keyword arguments (context, enterprise_id, team_id, user_id, actor_*), passed on
        to the inner authorization as they came."""
        where = (args.get("enterprise_id"), args.get("team_id"))
        if where in self._verified:
            return await self.inner(**args)
        async with self._first.setdefault(where, asyncio.Lock()):
            result = await self.inner(**args)
            if result is not None:
                self._verified.add(where)
                self._first.pop(where, None)
            return result
