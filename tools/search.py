"""Web search: a self-hosted SearXNG when configured, else the keyless `ddgs` package."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import BaseModel, Field

from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError, tool

DDGS_URL = "https://duckduckgo.com/"  # where the keyless ddgs package sends queries


class SearchResult(BaseModel):
    title: str
    url: str
    snippet: str


async def _searxng(ctx: ToolContext, base: str, query: str, limit: int) -> list[SearchResult]:
    url = base.rstrip("/") + "/search"
    async with ctx.http.get(url, params={"q": query, "format": "json"}) as response:
        if response.status != 200:
            raise ToolError(f"the search service answered HTTP {response.status}")
        data = await response.json(content_type=None)
    return [
        SearchResult(title=r.get("title", ""), url=r["url"], snippet=r.get("content", "")[:500])
        for r in data.get("results", [])
        if r.get("url")
    ][:limit]


def _ddgs(query: str, limit: int) -> list[SearchResult]:
    # Needs the internet, so it is not exercised by the tests (which use a SearXNG fake).
    from ddgs import DDGS

    rows = DDGS().text(query, max_results=limit) or []
    return [
        SearchResult(title=r.get("title", ""), url=r.get("href", ""), snippet=r.get("body", "")[:500])
        for r in rows
        if r.get("href")
    ]


# The timeout covers waiting for the user's approval (tools/guards/gate.py) as well as the search.
@tool(timeout=80, status="Searching the web…", egress=lambda ctx, _: [ctx.settings.searxng_url or DDGS_URL])
async def search_web(
    ctx: ToolContext,
    query: Annotated[str, Field(min_length=1, max_length=400)],
    max_results: Annotated[int, Field(ge=1, le=10)] = 5,
) -> list[SearchResult]:
    """Search the web; returns titles, URLs and snippets. Read a page with call_api."""
    if ctx.settings.searxng_url:
        return await _searxng(ctx, ctx.settings.searxng_url, query, max_results)
    return await asyncio.to_thread(_ddgs, query, max_results)
