"""Builds the AsyncApp and registers the listeners; thin on purpose."""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot.runtime import Runtime
from bot.slack import install
from bot.slack.deliveries import Deliveries
from bot.slack.front_door import FrontDoor, last_word, validate_payload
from bot.slack.listeners import (
    approvals,
    assistant,
    commands,
    digest,
    feedback,
    home,
    home_settings,
    messages,
    shortcuts,
    steps,
    uninstall,
)

log = logging.getLogger(__name__)


def build_app(rt: Runtime) -> AsyncApp:
    """The Bolt app: signed requests only (HTTP mode), every listener registered."""
    app = AsyncApp(
        client=rt.slack,
        signing_secret=rt.settings.slack_signing_secret or "socket-mode",
        # Listeners only hand work to rt.tasks and return, so Slack still gets its response in
        # milliseconds; in exchange every piece of work is tracked (tests, graceful shutdown).
        process_before_response=True,
        raise_error_for_unhandled_request=True,  # to last_word: every delivery gets its 200
        oauth_settings=install.settings_for(rt),
        # OAuth mode: the workspace of every request by our rule, before Bolt authorizes it
        before_authorize=install.before_authorize(rt.tokens.store) if rt.tokens is not None else None,
    )
    app.error(last_word)
    app.middleware(validate_payload)  # Socket Mode payloads; HTTP ones are checked at the front door
    if rt.tokens is not None:
        app.middleware(install.workspace_middleware)
    uninstall.register(app, rt)
    assistant.register(app, rt)  # before messages: it takes DM threads (assistant threads)
    messages.register(app, rt)
    feedback.register(app, rt)
    steps.register(app, rt)
    approvals.register(app, rt)
    commands.register(app, rt)
    digest.register(app, rt)
    home.register(app, rt)
    home_settings.register(app, rt)
    shortcuts.register(app, rt)
    return app


def build_web_app(app: AsyncApp, rt: Runtime) -> web.Application:
    """Slack requests at POST /slack/events; /healthz, /readyz and /metrics beside them."""
    from bot.health import add_routes

    limit = rt.settings.slack_max_body_bytes
    web_app = web.Application(client_max_size=limit)
    door = FrontDoor(app, rt.settings.slack_signing_secret or "", limit, Deliveries(rt))
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
    auth = await rt.slack.auth_test()
    rt.own_user_id = auth.get("user_id")
    log.info("connected to Slack team %s as %s", auth.get("team"), auth.get("user"))
