"""/research <question>: search -> read the top pages concurrently -> one cited summary."""

from __future__ import annotations

import asyncio
import json

from orchestrators.workflows.base import WorkflowReply
from tools.call_api import call_api
from tools.search import search_web
from tools.summarize import summarize
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError

PAGES = 3
PAGE_CHARS = 6_000
STYLE = (
    "Answer the question below from these sources only, in a few short paragraphs of Markdown. "
    "Cite sources inline as [1], [2] by their number. Say what the sources do not answer.\n"
    "Question: {question}"
)


async def research(ctx: ToolContext, question: str) -> WorkflowReply:
    """Web research with sources; pages are fetched through the guarded call_api."""
    results = await search_web(ctx, question, max_results=PAGES + 2)
    if not results:
        return WorkflowReply(f"I found nothing on the web for “{question}”.", notes=["no results"])
    picked = results[:PAGES]

    async def read(url: str) -> str | None:
        try:
            page = await call_api(ctx, url)
        except ToolError:
            return None  # a refused or broken page is skipped; the others still count
        text = page.text if page.text is not None else json.dumps(page.json_data)
        return (text or "")[:PAGE_CHARS] or None

    texts = await asyncio.gather(*(read(r.url) for r in picked))
    sources = [(r, t) for r, t in zip(picked, texts, strict=True) if t]
    notes = (
        [f"could not read {len(picked) - len(sources)} of {len(picked)} pages"]
        if len(sources) < len(picked)
        else []
    )
    if not sources:
        sources = [(r, r.snippet) for r in picked if r.snippet]
        notes = ["no page could be read: the answer uses search snippets only"]
    numbered = "\n\n".join(f"[{i}] {r.title} ({r.url})\n{t}" for i, (r, t) in enumerate(sources, 1))
    cited = "\n".join(f"{i}. <{r.url}|{r.title or r.url}>" for i, (r, _) in enumerate(sources, 1))
    if ctx.llm is None:
        body = "No language model is configured, so here are the sources I found:\n\n" + cited
        return WorkflowReply(body, sources=[r.url for r, _ in sources], notes=notes)
    answer = await summarize(ctx, numbered, STYLE.format(question=question))
    body = f"{answer.text.strip()}\n\n*Sources*\n{cited}"
    return WorkflowReply(body, sources=[r.url for r, _ in sources], notes=notes)
