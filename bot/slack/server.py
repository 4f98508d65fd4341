"""Running the bot: HTTP mode or Socket Mode, with a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot.config import Settings
from bot.digests.scheduler import DigestScheduler
from bot.runtime import Runtime, create_runtime
from bot.slack.app import build_app, build_web_app, identify
from bot.slack.turns import resume_waiting

log = logging.getLogger(__name__)

DRAIN_SECONDS = 25.0


@dataclass
class Running:
    rt: Runtime
    app: AsyncApp
    runner: web.AppRunner | None
    port: int | None
    socket: Any = None  # the Socket Mode handler, when connected that way

    async def stop(self, drain: float = DRAIN_SECONDS) -> None:
        """Stop taking requests, let answers in flight finish, record the rest as interrupted."""
        if self.rt.digest_scheduler is not None:
            await self.rt.digest_scheduler.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.socket is not None:
            await self.socket.close_async()
        left = await self.rt.tasks.drain(drain)
        if left:
            log.warning("%d answers were still running at shutdown", left)
        await self.rt.db.runs.interrupt_running()
        await self.rt.close()


async def start_scheduler(rt: Runtime, **options: Any) -> DigestScheduler:
    """Every process can run a digest now; only RUN_SCHEDULER processes keep the clock."""
    rt.digest_scheduler = DigestScheduler(rt, **options)
    if rt.settings.run_scheduler:
        await rt.digest_scheduler.start()
        log.info("digest scheduler running")
    return rt.digest_scheduler


async def start_http(
    rt: Runtime,
    host: str = "0.0.0.0",
    port: int = 3000,
    **scheduler_options: Any,
) -> Running:
    """Serve Slack's requests at POST /slack/events; port 0 picks a free one (tests)."""
    app = build_app(rt)
    await identify(rt)
    await resume_waiting(rt)
    await start_scheduler(rt, **scheduler_options)
    runner = web.AppRunner(build_web_app(app, rt), access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("listening on http://%s:%s/slack/events", host, bound)
    return Running(rt=rt, app=app, runner=runner, port=bound)


async def serve(settings: Settings) -> None:
    """`python -m bot`: run until SIGTERM/SIGINT."""
    rt = await create_runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.socket_mode:
        running = await start_socket_mode(rt)
    else:
        running = await start_http(rt, port=settings.port)
    await stop.wait()
    log.info("stopping: finishing answers in flight")
    await running.stop()


async def start_socket_mode(rt: Runtime, **scheduler_options: Any) -> Running:
    """Connect out to Slack over a WebSocket: no public URL needed (local use)."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    app = build_app(rt)
    await identify(rt)
    await resume_waiting(rt)
    await start_scheduler(rt, **scheduler_options)
    handler = AsyncSocketModeHandler(app, rt.settings.slack_app_token)
    await handler.connect_async()
    log.info("connected in Socket Mode")
    return Running(rt=rt, app=app, runner=None, port=None, socket=handler)


async def clock(settings: Settings) -> None:
    """`python -m bot clock`: only the digest scheduler, for hosts with several web processes."""
    rt = await create_runtime(settings)
    await identify(rt)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await start_scheduler(rt)
    await stop.wait()
    await Running(rt=rt, app=build_app(rt), runner=None, port=None).stop()
