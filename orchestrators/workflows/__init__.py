"""Code workflows: fixed pipelines over the shared tools, also offered to the model as tools."""

from typing import Annotated, Any

from pydantic import Field

from orchestrators.workflows.base import WorkflowReply
from orchestrators.workflows.channel_summary import summarize_channel
from orchestrators.workflows.research import research
from orchestrators.workflows.weather_report import weather_report
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import Tool, tool


# A workflow sends nothing itself: each of its steps passes the gate as its own call.
@tool(name="weather_report", timeout=180, max_output_chars=6_000, status="Checking the weather…", egress=())
async def weather_report_tool(
    ctx: ToolContext, place: Annotated[str, Field(min_length=1, max_length=100)]
) -> dict[str, str]:
    """Run the tested weather pipeline (geocode, forecast, summary) for a place; prefer it for weather."""
    return {"report": (await weather_report(ctx, place)).text}


@tool(name="research", timeout=150, max_output_chars=10_000, egress=())
async def research_tool(
    ctx: ToolContext, question: Annotated[str, Field(min_length=3, max_length=500)]
) -> dict[str, object]:
    """Run the tested research pipeline (search, read top pages, cited answer) for a question."""
    reply = await research(ctx, question)
    return {"answer": reply.text, "sources": reply.sources}


def workflow_tools() -> list[Tool[..., Any]]:
    """The workflows the LLM orchestrator may call as single tools."""
    return [weather_report_tool, research_tool]


__all__ = ["WorkflowReply", "research", "summarize_channel", "weather_report", "workflow_tools"]
