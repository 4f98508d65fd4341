"""A small web server for call_api: an article, JSON, redirects, big, slow and binary bodies."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.fakes.server import FakeServer

ARTICLE = """<!doctype html><html><head><title>Bolt for Python changelog</title></head><body>
<nav>Home | Docs | Blog</nav>
<article><h1>Bolt for Python 1.30</h1>
<p>Version 1.30 adds say_stream for streaming answers into Slack threads.</p>
<p>It also fixes the retry headers of Socket Mode and documents the assistant middleware.</p>
<p>Upgrade with pip install -U slack-bolt; nothing else changes for existing apps.</p>
</article><footer>Copyright</footer></body></html>"""


class FakeWeb(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []
        self.received: list[tuple[str, bytes]] = []  # (method, body) of /api/echo requests
        self.pages: dict[str, str] = {}
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()  # set by stop(), so a pending /slow does not delay shutdown

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/article", self._article)
        app.router.add_get("/page/{name}", self._page)
        app.router.add_get("/api/data", self._json)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_route("*", "/redirect307", self._redirect307)
        app.router.add_get("/big", self._big)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/binary", self._binary)
        app.router.add_get("/", self._root)
        app.router.add_route("*", "/api/echo", self._echo)

    async def _track(self, request: web.Request) -> None:
        self.hits.append(request.path_qs)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1

    async def _root(self, request: web.Request) -> web.Response:
        await self._track(request)
        return web.Response(text="root", content_type="text/plain")

    async def _article(self, request: web.Request) -> web.Response:
        await self._track(request)
        return web.Response(text=ARTICLE, content_type="text/html")

    async def _page(self, request: web.Request) -> web.Response:
        await self._track(request)
        name = request.match_info["name"]
        body = self.pages.get(
            name, f"<html><body><article><p>Page {name} says hello.</p></article></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def _json(self, request: web.Request) -> web.Response:
        await self._track(request)
        return web.json_response({"items": [1, 2, 3], "source": "fake"})

    async def _echo(self, request: web.Request) -> web.Response:
        await self._track(request)
        body = await request.read()
        self.received.append((request.method, body))
        return web.json_response({"method": request.method, "received": len(body)})

    async def _redirect(self, request: web.Request) -> web.Response:
        await self._track(request)
        raise web.HTTPFound(request.query["to"])

    async def _redirect307(self, request: web.Request) -> web.Response:
        """Repeat the request (method and body) at `to`."""
        await self._track(request)
        raise web.HTTPTemporaryRedirect(request.query["to"])

    async def _big(self, request: web.Request) -> web.Response:
        await self._track(request)
        return web.Response(text="x" * 5_000_000, content_type="text/plain")

    async def _slow(self, request: web.Request) -> web.Response:
        await self._track(request)
        try:
            await asyncio.wait_for(self.release.wait(), 30)
        except TimeoutError:
            pass
        return web.Response(text="late")

    async def stop(self) -> None:
        self.release.set()
        await super().stop()

    async def _binary(self, request: web.Request) -> web.Response:
        await self._track(request)
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(200), content_type="image/png")
