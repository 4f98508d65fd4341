"""/healthz, /readyz and /metrics: what hosts and load balancers probe, in HTTP and Socket Mode.

/healthz answers 200 while the process can do its work and 503 naming the failing dependency
(the database) when it cannot; /readyz also requires the schema to be at this version's revision
and, for at most MCP_READY_SECONDS after start, each MCP server's first connect to have ended (it
reports every server's state, so a server that is down is named without holding readiness back);
in Socket Mode it fails for good, naming the reason, once Slack has disabled the app's link.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.db import schema
from bot.ops import metrics

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0


async def _database_problem(rt: Runtime) -> str | None:
    try:
        await rt.db.ping(PROBE_TIMEOUT)
    except Exception as exc:  # a probe reports every failure
        return f"{type(exc).__name__}: {exc}"[:300] or "no answer"
    return None


async def check(rt: Runtime, *, ready: bool) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": True, "in_flight": len(rt.tasks)}
    failing: dict[str, str] = {}
    if problem := await _database_problem(rt):
        failing["database"] = problem
    elif ready:
        try:
            found = await schema.state(rt.db.engine)
            if found.status != "current":
                failing["schema"] = found.describe()
        except Exception as exc:  # a probe reports every failure
            failing["schema"] = f"{type(exc).__name__}: {exc}"[:300]
    if ready and rt.socket_down:
        failing["slack"] = rt.socket_down
    servers = {"mcp_servers": rt.mcp.status()} if ready and rt.mcp.links else {}
    if servers and (waiting := rt.mcp.waiting()):
        failing["mcp"] = f"waiting for the first connect of {', '.join(waiting)}"
    if failing:
        log.warning("%s: failing %s", "readyz" if ready else "healthz", failing)
        return 503, {"ok": False, "failing": sorted(failing), **failing, **servers}
    return 200, {**body, **servers}


def add_routes(app: web.Application, rt: Runtime) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        status, body = await check(rt, ready=False)
        return web.json_response(body, status=status)

    async def readyz(_request: web.Request) -> web.Response:
        status, body = await check(rt, ready=True)
        return web.json_response(body, status=status)

    async def metrics_page(_request: web.Request) -> web.Response:
        payload, content_type = metrics.exposition()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)


async def start_health_server(rt: Runtime, host: str, port: int) -> tuple[web.AppRunner, int]:
    """The probes on their own port, for Socket Mode and clock processes (no Slack HTTP)."""
    app = web.Application()
    add_routes(app, rt)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("health checks on http://%s:%s/healthz, /readyz, /metrics", host, bound)
    return runner, bound
