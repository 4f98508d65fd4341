"""An MCP server over stdio that lists recorded tool schemas of real servers, exactly as published.

Run as `python -m tests.fakes.published_mcp_server TOOLS_JSON STATE_DIR`: TOOLS_JSON is a list of
tools as `tools/list` returns them (tests/fixtures/mcp/). Built on the official SDK's low-level
server, so the schemas go over the wire untouched. A call is appended to STATE_DIR/calls.jsonl
(name and arguments) and answered with a short text naming the tool.
With `--gate PATH`, `tools/list` waits until PATH exists: a slow server, as long as a test wants.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS = [types.Tool.model_validate(t) for t in json.loads(Path(sys.argv[1]).read_text())]
STATE = Path(sys.argv[2])
GATE = Path(sys.argv[sys.argv.index("--gate") + 1]) if "--gate" in sys.argv else None


async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
    while GATE is not None and not GATE.exists():
        await asyncio.sleep(0.02)
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    with (STATE / "calls.jsonl").open("a") as f:
        f.write(json.dumps({"name": params.name, "arguments": params.arguments}) + "\n")
    text = f"{params.name} done: {json.dumps(params.arguments, sort_keys=True)}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def main() -> None:
    server = Server("published", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    STATE.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
