"""A tiny base for loopback fakes: an aiohttp app on 127.0.0.1 and a free port.

Tests mock at the network edge: product code talks real HTTP to these servers, started inside the
test's own event loop, so nothing in the product is patched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web


class FakeServer:
    """Subclasses add their routes in `routes()`; `start()` binds 127.0.0.1 on a free port.

    Use as `async with FakeThing() as fake:` or call `start()` / `stop()` yourself.
    """

    # A handler still sleeping when the test ends (a slow scripted reply) is cancelled after this
    # long, so a forgotten delay costs a test a second, not aiohttp's default minute.
    shutdown_timeout = 1.0

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port = 0
        # TCP connections accepted so far: a client that reuses its connections (one HTTP
        # session per process) opens few, one that opens a session per call opens one per call.
        self.connections = 0

    def routes(self, app: web.Application) -> None:
        """Add this fake's routes; the base has none, so a test may add its own to `app`."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        if self._runner is not None:
            return self
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await self._runner.setup()
        site = CountingSite(self._runner, "127.0.0.1", 0, on_accept=self._accepted)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    def _accepted(self) -> None:
        self.connections += 1

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class CountingSite(web.TCPSite):
    """aiohttp's TCPSite, calling `on_accept` for every TCP connection it accepts.

    asyncio calls a server's protocol factory once per accepted connection, so wrapping aiohttp's
    factory counts connections exactly, whatever the requests on them do.
    """

    __slots__ = ("_on_accept",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, on_accept: Callable[[], None]) -> None:
        super().__init__(runner, host, port)
        self._on_accept = on_accept

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, as TCPSite does
        factory = self._runner.server
        assert factory is not None

        def protocol() -> Any:
            self._on_accept()
            return factory()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
