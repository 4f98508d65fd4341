"""HTTP GET of a JSON API or a web page chosen by the model, through the SSRF guard."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tools.guards.gate import check_egress
from tools.guards.netguard import Fetched, Refused, guarded_get
from tools.parsing.extract import ExtractError, extract
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError, tool

TEXT_LIMIT = 20_000
USER_AGENT = "Switchboard/0.1 (Slack bot; call_api tool)"


class FetchedPage(BaseModel):
    url: str
    final_url: str
    status: int
    content_type: str
    text: str | None = None
    json_data: Any = None
    truncated: bool = False


MAX_URL_CHARS = 2_000


def request_mode(args: dict[str, Any]) -> Literal["read", "write"]:
    """A GET without a body only reads; anything else may change something, so it is a write."""
    return "read" if args.get("method", "GET") == "GET" and args.get("body") is None else "write"


# The timeout covers waiting for the user's approval (tools/guards/gate.py) as well as the fetch.
@tool(
    timeout=90,
    max_output_chars=TEXT_LIMIT + 1_000,
    status="Reading a web page…",
    mode=request_mode,
    egress=lambda _, args: [args["url"]],
)
async def call_api(
    ctx: ToolContext,
    url: Annotated[str, Field(min_length=8)],
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET",
    body: dict[str, Any] | None = None,
) -> FetchedPage:
    """Call a public JSON API or read a web page (http/https); pages come back as readable text.

    Args:
        url: the address to call.
        method: GET reads; any other method changes something and needs the user's approval.
        body: a JSON object to send (needs the user's approval).
    """
    if len(url) > MAX_URL_CHARS:  # checked here: a big maxLength in the schema breaks llama.cpp
        raise ToolError(f"the URL is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted")
    fetched = await _fetch(ctx, url, method, body)
    ctx.note_source(f"web:{urlsplit(fetched.final_url).hostname or ''}", public=True)
    return await _page_of(ctx, url, fetched)


async def _fetch(ctx: ToolContext, url: str, method: str, body: dict[str, Any] | None) -> Fetched:
    """The response, through the network guard (every redirect hop asks egress anew)."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json, text/html;q=0.9, */*;q=0.5"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        return await guarded_get(
            url,
            allow_hosts=ctx.settings.http_allow_hosts,
            max_bytes=ctx.settings.fetch_max_bytes,
            timeout=ctx.settings.fetch_timeout,
            headers=headers,
            method=method,
            data=data,
            before_redirect=lambda hop: check_egress(ctx, "call_api", hop),  # each hop decided anew
        )
    except Refused as exc:
        raise ToolError(f"refused: {exc}") from None
    except TimeoutError:
        raise ToolError(f"{url} took longer than {ctx.settings.fetch_timeout:g} s") from None


async def _page_of(ctx: ToolContext, url: str, fetched: Fetched) -> FetchedPage:
    """JSON as data, a page as readable text (parsed in a worker), other text as it is."""
    kind = fetched.content_type.split(";")[0].strip().lower()
    page = FetchedPage(
        url=url,
        final_url=fetched.final_url,
        status=fetched.status,
        content_type=kind,
        truncated=fetched.truncated,
    )
    if b"\x00" in fetched.body[:4096]:  # unlabelled or mislabelled binary: no use to a model
        raise ToolError(f"{url} returned binary data ({kind or 'no content type'}), not text or JSON")
    raw = fetched.body.decode("utf-8", errors="replace")
    if kind.endswith("json"):
        try:
            page.json_data = json.loads(raw)
            return page
        except json.JSONDecodeError:
            page.text = raw[:TEXT_LIMIT]
    elif "html" in kind or raw.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        try:  # in a worker process that dies on the deadline: a hostile page cannot pin a core
            page.text = await extract(
                ctx.extractor,
                "html",
                fetched.body,
                ctx.settings.extract_deadline,
                owner=ctx.requester,
                until=ctx.deadline,
            )
        except ExtractError as exc:
            raise ToolError(f"{url}: the page could not be read: {exc}") from None
    elif kind.startswith("text/") or not kind:
        page.text = raw
    else:
        raise ToolError(f"{url} returned {kind}, which is not text or JSON")
    if page.text and len(page.text) > TEXT_LIMIT:
        page.text, page.truncated = page.text[:TEXT_LIMIT], True
    return page
