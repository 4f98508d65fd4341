"""Running the bot: HTTP mode or Socket Mode, with a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot.db.retention import retention_loop
from bot.digests.scheduler import DigestScheduler
from bot.ops.health import start_health_server
from bot.runtime import Runtime, create_runtime
from bot.settings import Settings
from bot.slack.answering import approved_writes, command_jobs, turns
from bot.slack.answering.approved_writes import sweep_forever
from bot.slack.app import build_app, build_web_app, identify
from bot.slack.door import deliveries
from bot.slack.door.front_door import DoorThread
from bot.slack.listeners.slash_commands import RUNNERS

log = logging.getLogger(__name__)


@dataclass
class Running:
    rt: Runtime
    app: AsyncApp
    runner: web.AppRunner | None
    port: int | None
    door: DoorThread | None = None  # HTTP mode: the public port, on its own thread
    socket: Any = None  # the Socket Mode handler, when connected that way
    health: web.AppRunner | None = None  # the probes' own server (Socket Mode, clock)
    health_port: int | None = None
    background: list[asyncio.Task[Any]] = field(default_factory=list)  # sweeps, retention

    async def stop(self, drain: float | None = None) -> None:
        """Stop taking requests, let answers in flight finish (SHUTDOWN_DRAIN_SECONDS), hand the
        rest over."""
        drain = self.rt.settings.shutdown_drain_seconds if drain is None else drain
        for task in self.background:
            task.cancel()
        if self.rt.digest_scheduler is not None:
            await self.rt.digest_scheduler.stop()
        if self.door is not None:
            await self.door.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.socket is not None:
            await self.socket.close_async()
        handed, left = await asyncio.gather(self.rt.work.stop(drain), self.rt.tasks.drain(drain))
        if handed:
            log.warning("%d jobs were still running at shutdown and were handed over", handed)
        if left:
            log.warning("%d background tasks were still running at shutdown", left)
        with contextlib.suppress(Exception):  # the database may be what failed
            await self.rt.db.runs.interrupt_running()
        if self.health is not None:
            await self.health.cleanup()
        await self.rt.close()


async def start_scheduler(rt: Runtime, **options: Any) -> DigestScheduler:
    """Every process can run a digest now; only RUN_SCHEDULER processes keep the clock."""
    scheduler = rt.digest_scheduler = DigestScheduler(rt, **options)
    if rt.settings.run_scheduler:
        await scheduler.start()
        log.info("digest scheduler running")
    return scheduler


async def start_work(rt: Runtime, app: AsyncApp | None = None) -> None:
    """Register the job kinds this process runs, then start claiming. Web processes (`app`, the
    listeners) run every kind; a clock process only digests."""
    if app is not None:
        deliveries.register(rt, app)
        turns.register(rt)
        command_jobs.register(rt, RUNNERS)
        approved_writes.register(rt)
    await rt.work.start()


def start_sweeper(rt: Runtime) -> asyncio.Task[None]:
    """Parked write calls nobody settled (expired, or decided in a process that then died)."""
    every = min(15.0, max(0.2, rt.settings.write_approval_seconds / 4))
    return asyncio.get_running_loop().create_task(sweep_forever(rt, every), name="parked write calls")


def start_retention(rt: Runtime) -> list[asyncio.Task[Any]]:
    """Retention runs where the clock runs: one process per deployment purges old rows."""
    if not rt.settings.run_scheduler or not rt.settings.retention_days:
        return []
    return [asyncio.create_task(retention_loop(rt.db, rt.settings.retention_days), name="retention")]


async def start_http(
    rt: Runtime,
    host: str | None = None,
    port: int | None = None,
    **scheduler_options: Any,
) -> Running:
    """Serve Slack's requests at POST /slack/events; port 0 picks a free one (tests).

    The public port is the front door's thread (events recorded and acked there); this loop's
    server, on a loopback port, takes the rest (commands, interactivity, OAuth, probes).
    """
    host = rt.settings.host if host is None else host
    port = rt.settings.port if port is None else port
    app = build_app(rt)
    await identify(rt)
    await start_scheduler(rt, **scheduler_options)
    runner = web.AppRunner(build_web_app(app, rt), access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    door = DoorThread(rt, host, port, f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        bound = await door.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("listening on http://%s:%s/slack/events", host, bound)
    await start_work(rt, app)
    background = [*start_retention(rt), start_sweeper(rt)]
    # What start-up made lives as long as the process: out of the collector's sight, a full
    # collection (which holds the interpreter, acks included) walks only what answers make.
    gc.freeze()
    return Running(rt=rt, app=app, runner=runner, port=bound, door=door, background=background)


async def start_socket_mode(rt: Runtime, health_port: int | None = None, **scheduler_options: Any) -> Running:
    """Connect out to Slack over a WebSocket: no public URL needed (local use).

    HEALTH_PORT (or `health_port`, 0 for a free one) serves the probes, which hosts need even
    when Slack needs no inbound port.
    """
    from bot.slack.socket_mode import EtiquetteHandler

    app = build_app(rt)
    await identify(rt)
    await start_scheduler(rt, **scheduler_options)
    await start_work(rt, app)
    background = [*start_retention(rt), start_sweeper(rt)]
    running = Running(rt=rt, app=app, runner=None, port=None, background=background)
    await _start_health(running, health_port)

    def link_disabled(reason: str) -> None:
        rt.socket_down = reason

    handler = EtiquetteHandler(app, rt.settings.slack_app_token or "", link_disabled)
    await handler.connect_async()  # type: ignore[no-untyped-call]  # slack_bolt's is unannotated
    running.socket = handler
    log.info("connected in Socket Mode")
    return running


async def _start_health(running: Running, port: int | None) -> None:
    port = running.rt.settings.health_port if port is None else port
    if port is not None:
        running.health, running.health_port = await start_health_server(
            running.rt, running.rt.settings.host, port
        )


async def start_clock(rt: Runtime, health_port: int | None = None) -> Running:
    """Only the digest scheduler and retention, for hosts with several web processes."""
    await identify(rt)
    await start_scheduler(rt)
    await start_work(rt)
    running = Running(rt=rt, app=build_app(rt), runner=None, port=None, background=start_retention(rt))
    await _start_health(running, health_port)
    return running


async def _run_until_signalled(settings: Settings, start: Callable[[Runtime], Awaitable[Running]]) -> None:
    # Handlers first: /readyz may answer 200 while `start` is still finishing, and a SIGTERM then
    # must stop the process gracefully, not kill it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rt = await create_runtime(settings)
    try:
        running = await start(rt)
    except BaseException:
        await rt.close()  # a failed start (bad token, port taken) leaks no client session
        raise
    await stop.wait()
    log.info("stopping: finishing answers in flight")
    await running.stop()


async def serve(settings: Settings) -> None:
    """`switchboard serve`: run until SIGTERM/SIGINT."""
    await _run_until_signalled(settings, start_socket_mode if settings.socket_mode else start_http)


async def clock(settings: Settings) -> None:
    """`switchboard clock`: only the digest scheduler (and retention)."""
    await _run_until_signalled(settings, start_clock)
