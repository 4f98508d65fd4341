"""The data-flow guard: after a run has read non-public content, what may leave the workspace.

A model-chosen outbound request (call_api, search_web, a geocoding lookup) then goes only to a
host the operator trusts for that (EGRESS_TRUSTED_HOSTS; TOOL_HTTP_ALLOW_HOSTS only lifts the
private-address guard and does not count), or to one the requesting user approved for this run.
Otherwise nothing is sent and the tool's error tells the model why.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tools.context import ToolContext
from tools.registry import ToolError


def trusted(host: str, port: int | None, hosts: frozenset[str]) -> bool:
    return host in hosts or (port is not None and f"{host}:{port}" in hosts)


async def guard_egress(ctx: ToolContext, tool: str, url: str) -> None:
    """Return if `url` may be requested now; raise ToolError (nothing sent) if not."""
    if not ctx.flow.private_sources:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if trusted(host, port, ctx.settings.egress_trusted_hosts) or host in ctx.flow.approved_hosts:
        return
    read = ", ".join(s.removeprefix("slack:") for s in ctx.flow.private_sources)
    if ctx.approver is None:
        raise ToolError(
            f"Not sent: this run has read non-public content ({read}) and {host} is not a trusted "
            "destination; nobody is here to approve it. Answer without it."
        )
    decision = await ctx.approver.approve(
        ctx, tool=tool, host=host, url=url, sources=ctx.flow.private_sources
    )
    if decision.approved:
        ctx.flow.approved_hosts.add(host)
        return
    why = {"denied": "the user denied it", "expired": "the user did not approve it in time"}.get(
        decision.state, "it could not be approved"
    )
    raise ToolError(
        f"Not sent: this run has read non-public content ({read}), so sending a request to {host} "
        f"needed the user's approval, and {why}. Do not retry; answer with what you have."
    )
