"""Builds the AsyncApp and registers the listeners; thin on purpose."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack import install
from bot.slack.door.authorize import VerifiedBotToken, VerifiedInstallations
from bot.slack.door.deliveries import Deliveries
from bot.slack.door.front_door import FrontDoor, bolt_dispatch, last_word, validate_payload
from bot.slack.listeners import (
    assistant,
    digest,
    home,
    home_settings,
    messages,
    shortcuts,
    slash_commands,
    uninstall,
)
from bot.slack.listeners.clicks import approval_buttons, feedback_buttons, show_steps
from bot.slack.output.safe_text import CleanWebClient, SessionRespond, reply_session

log = logging.getLogger(__name__)


def build_app(rt: Runtime) -> AsyncApp:
    """The Bolt app: signed requests only (HTTP mode), every listener registered."""
    oauth = install.settings_for(rt)
    authorize: AsyncAuthorize = (
        VerifiedBotToken(rt) if oauth is None else VerifiedInstallations(oauth.authorize)
    )
    app = AsyncApp(
        client=bolt_client(rt.slack),
        authorize=authorize,  # type: ignore[arg-type]  # Bolt takes an AsyncAuthorize as it is
        signing_secret=rt.settings.slack_signing_secret or "socket-mode",
        # Listeners only hand work to rt.tasks and return, so Slack still gets its response in
        # milliseconds; in exchange every piece of work is tracked (tests, graceful shutdown).
        process_before_response=True,
        raise_error_for_unhandled_request=True,  # to last_word: every delivery gets its 200
        oauth_settings=oauth,
        # OAuth mode: the workspace of every request by our rule, before Bolt authorizes it
        before_authorize=install.before_authorize(rt.tokens.store) if rt.tokens is not None else None,
    )
    app.error(last_word)
    app.middleware(validate_payload)  # Socket Mode payloads; HTTP ones are checked at the front door
    app.middleware(shared_session(rt))
    if rt.tokens is not None:
        app.middleware(install.workspace_middleware)
    uninstall.register(app, rt)
    assistant.register(app, rt)  # before messages: it takes DM threads (assistant threads)
    messages.register(app, rt)
    feedback_buttons.register(app, rt)
    show_steps.register(app, rt)
    approval_buttons.register(app, rt)
    slash_commands.register(app, rt)
    digest.register(app, rt)
    home.register(app, rt)
    home_settings.register(app, rt)
    shortcuts.register(app, rt)
    return app


def bolt_client(client: AsyncWebClient) -> AsyncWebClient:
    """The template Bolt copies into each request's client: the process's URL, HTTP session and
    retries, and no token of its own (the authorize step gives each request its token; a token
    here would only make Bolt warn that it goes unused)."""
    if client.token is None:
        return client
    return CleanWebClient(
        token=None,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        retry_handlers=client.retry_handlers,
    )


def shared_session(rt: Runtime) -> Callable[..., Awaitable[Any]]:
    """A listener's `respond` replies over the process's HTTP session, not a session of its own."""

    async def middleware(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:
        reply_session.set(rt.http)
        if context.response_url:  # what Bolt's context.respond would be, on the shared session
            client = context.client
            context["respond"] = SessionRespond(
                response_url=context.response_url, session=rt.http, proxy=client.proxy, ssl=client.ssl
            )
        return await next()

    return middleware


def build_web_app(app: AsyncApp, rt: Runtime) -> web.Application:
    """Slack requests at POST /slack/events; /healthz, /readyz and /metrics beside them."""
    from bot.ops.health import add_routes

    limit = rt.settings.slack_max_body_bytes
    web_app = web.Application(client_max_size=limit)
    door = FrontDoor(rt.settings.slack_signing_secret or "", limit, bolt_dispatch(app), Deliveries(rt))
    web_app.router.add_post("/slack/events", door.handle)
    web_app.on_cleanup.append(door.close)
    add_routes(web_app, rt)
    if rt.tokens is not None:
        install.add_routes(web_app, app)
    return web_app


async def identify(rt: Runtime) -> None:
    """Learn the bot's own user id, so its messages are never answered (in OAuth mode each
    request brings its installation's, bot/slack/install.py)."""
    if rt.tokens is not None:
        await rt.tokens.load_bot_users()  # resumed work is served by team id alone
        log.info("OAuth mode: install at /slack/install; each workspace uses its own token")
        return
    auth = await rt.bot_identity()  # the one auth.test: Bolt's authorize reuses it (authorize.py)
    rt.own_user_id = auth.get("user_id")
    log.info("connected to Slack team %s as %s", auth.get("team"), auth.get("user"))
