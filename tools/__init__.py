"""The tools, one typed async function per module, used by both orchestrators; what they are built
from (toolkit/), the gate they pass (guards/), MCP servers, parsing and the model client below."""

from tools.call_api import call_api
from tools.current_time import current_time
from tools.read_channel import read_channel
from tools.search import search_web
from tools.summarize import summarize
from tools.toolkit.context import MemoryTrace, ToolContext, ToolSettings, Usage
from tools.toolkit.registry import Tool, ToolError, ToolRegistry, ToolResult, tool
from tools.weather import get_weather


def default_tools() -> ToolRegistry:
    """The tools the model may call in a conversation."""
    return ToolRegistry([get_weather, search_web, call_api, summarize, read_channel, current_time])


__all__ = [
    "MemoryTrace",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "Usage",
    "default_tools",
    "tool",
]
