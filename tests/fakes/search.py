"""A fake SearXNG JSON API with per-query results."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer


class FakeSearxng(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.default: list[dict[str, Any]] = []
        self.queries: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/search", self._search)

    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        self.queries.append(query)
        if request.query.get("format") != "json":
            return web.Response(status=403, text="format not allowed")
        rows = self.results.get(query, self.default)
        return web.json_response({"query": query, "number_of_results": len(rows), "results": rows})
