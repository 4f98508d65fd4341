"""Install anywhere: Slack's OAuth v2 flow, and the right workspace's token on every call.

In OAuth mode the process keeps one Slack client (`rt.slack`, so every post still passes the
one surface and CleanWebClient); each call takes the bot token of the workspace being served.
That workspace is set once where work starts: a Bolt middleware for requests (tasks spawned
from a listener inherit it), and the turn, command-job and digest runners for work taken from
the database. A call with no workspace set, or for a workspace without an installation, fails
loudly rather than using another workspace's token.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.db.workspaces.installations import Installations, OAuthStates
from bot.slack.door.workspace import request_enterprise, request_workspace
from bot.slack.output.safe_text import CleanWebClient
from tools.toolkit.errors import InvariantError, ServiceError

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

Workspace = tuple[str | None, str]  # (enterprise id, team id)
current: contextvars.ContextVar[Workspace | None] = contextvars.ContextVar("workspace", default=None)
bot_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("bot_user", default=None)
INSTALL_PATH, REDIRECT_PATH = "/slack/install", "/slack/oauth_redirect"
TOKEN_SECONDS = 300.0  # how long a looked-up token is reused (another process may uninstall)
SCOPES = (  # manifest.yml's oauth_config.scopes.bot; tests/test_manifest.py keeps them equal
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:history",
    "mpim:read",
    "users:read",
)


class NotInstalled(ServiceError):
    """Slack work for a workspace that has no installation (never installed, or uninstalled)."""


# Each workspace's bot user id, for `serve`: filled at start (`WorkspaceTokens.load_bot_users`),
# by every token lookup and by every request, so a turn resumed after a crash knows it too.
_bot_users: dict[str, str] = {}


def serve(team: str, enterprise: str | None = None) -> None:
    """Slack calls in this task (and tasks it starts) act for this workspace, as its bot user."""
    current.set((enterprise, team))
    bot_user.set(_bot_users.get(team))


def served_team() -> str | None:
    """The workspace this task serves in OAuth mode (None in single-workspace mode)."""
    where = current.get()
    return where[1] if where else None


class WorkspaceTokens:
    """Bot tokens by workspace, from the installations table, cached briefly."""

    def __init__(self, store: Installations) -> None:
        self.store = store
        self._cache: dict[Workspace, tuple[str, float]] = {}
        _bot_users.clear()  # one per process: what a former runtime learned is not this one's

    async def token(self, where: Workspace) -> str:
        cached = self._cache.get(where)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        enterprise, team = where
        bot = await self.store.async_find_bot(enterprise_id=enterprise, team_id=team)
        if bot is None:
            raise NotInstalled(f"the app is not installed in workspace {team}")
        self._cache[where] = (bot.bot_token, time.monotonic() + TOKEN_SECONDS)
        if bot.bot_user_id:
            _bot_users[team] = bot.bot_user_id
            if current.get() == where and bot_user.get() is None:
                bot_user.set(bot.bot_user_id)  # this task's (a caller awaiting us shares it)
        return bot.bot_token

    async def load_bot_users(self) -> None:
        """Learn every installation's bot user id at start: work resumed from the database is
        served by team id alone and must still recognise its own bot's messages."""
        _bot_users.update(await self.store.bot_users())

    async def current(self) -> str:
        """The token of the workspace this task serves (see `serve`)."""
        where = current.get()
        if where is None:
            raise NotInstalled("a Slack token was needed outside any workspace's work")
        return await self.token(where)

    def forget(self, team: str) -> None:
        for key in [k for k in self._cache if k[1] == team]:
            del self._cache[key]
        _bot_users.pop(team, None)


class InstalledWebClient(CleanWebClient):
    """`rt.slack` in OAuth mode: no token of its own; each call carries the current workspace's."""

    def __init__(self, tokens: WorkspaceTokens, **kwargs: Any) -> None:
        super().__init__(token=None, **kwargs)
        self.tokens = tokens

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        if kwargs.get("auth") is None and not _has_token(kwargs):  # oauth.v2.access uses auth
            token = await self.tokens.current()
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {token}"}
        return await super().api_call(api_method, **kwargs)


def _has_token(kwargs: dict[str, Any]) -> bool:
    return any(isinstance(kwargs.get(k), dict) and "token" in kwargs[k] for k in ("params", "json", "data"))


def settings_for(rt: Runtime) -> AsyncOAuthSettings | None:
    """Bolt's OAuth settings in OAuth mode (installations and states in our database), else None."""
    if rt.tokens is None:
        return None
    return AsyncOAuthSettings(
        client_id=rt.settings.slack_client_id,
        client_secret=rt.settings.slack_client_secret,
        scopes=list(SCOPES),
        installation_store=rt.tokens.store,
        state_store=OAuthStates(rt.db),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
    )


def add_routes(web_app: web.Application, app: AsyncApp) -> None:
    """GET /slack/install (the "Add to Slack" page) and /slack/oauth_redirect (Slack's answer)."""
    flow = app.oauth_flow
    if flow is None:
        raise InvariantError("OAuth routes without an OAuth flow")

    async def install_page(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

    async def callback(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    web_app.router.add_get(INSTALL_PATH, install_page)
    web_app.router.add_get(REDIRECT_PATH, callback)


def before_authorize(store: Installations) -> Callable[..., Awaitable[Any]]:
    """Bolt's `before_authorize`: decide the workspace of a request by our rule
    (bot/slack/door/workspace.py), for events, interactivity and slash commands alike, before Bolt
    looks its installation up; Bolt's own rule prefers the payload's `team`, which in a Slack
    Connect channel is the clicking person's organisation. The org of a Grid workspace is kept,
    so work resumed later by team id finds an org-wide installation."""

    async def decide(body: dict[str, Any], context: Any, next: Callable[[], Awaitable[Any]]) -> Any:
        team = request_workspace(body)
        if team is not None:
            enterprise, org_wide = request_enterprise(body)
            context["team_id"], context["enterprise_id"] = team, enterprise
            context["is_enterprise_install"] = org_wide
            if enterprise:
                await store.remember_org(team, enterprise)
        return await next()

    return decide


async def workspace_middleware(context: Any, next: Callable[[], Awaitable[Any]]) -> Any:
    """Every request is served for the workspace Bolt authorized it for."""
    if context.team_id or context.enterprise_id:
        serve(context.team_id or "", context.enterprise_id)
        if context.bot_user_id:
            _bot_users[context.team_id or ""] = context.bot_user_id
            bot_user.set(context.bot_user_id)
    return await next()
