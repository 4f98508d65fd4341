"""/weather <place>: geocode -> forecast -> one summarize call (skipped without a model)."""

from __future__ import annotations

from orchestrators.workflows.base import WorkflowReply
from tools.summarize import summarize
from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError
from tools.weather import Forecast, geocode, get_forecast

STYLE = (
    "Write one short paragraph for a Slack channel about tomorrow's weather in {place}: what the "
    "day holds and what to wear or carry. Plain words, no table."
)


def format_forecast(forecast: Forecast) -> str:
    """A readable table of the forecast; the whole answer when no model is configured."""
    place = forecast.place
    where = f"{place.name}, {place.country}" if place.country else place.name
    lines = [f"**Weather for {where}**", "", "| day | sky | high | low | rain |", "|---|---|---|---|---|"]
    for day in forecast.days:
        rain = f"{day.precipitation_mm or 0:g} mm"
        if day.precipitation_chance_pct is not None:
            rain += f" ({day.precipitation_chance_pct:g}%)"
        lines.append(f"| {day.date} | {day.summary} | {day.temp_max_c:g}°C | {day.temp_min_c:g}°C | {rain} |")
    return "\n".join(lines)


async def weather_report(ctx: ToolContext, place: str) -> WorkflowReply:
    """Tomorrow's forecast for a place with a short summary."""
    spot = await geocode(ctx, place)
    forecast = await get_forecast(ctx, spot, days=2)
    table = format_forecast(forecast)
    if ctx.llm is None:
        return WorkflowReply(table, notes=["no language model configured: forecast only"])
    tomorrow = forecast.days[1] if len(forecast.days) > 1 else forecast.days[0]
    try:
        summary = await summarize(ctx, tomorrow.model_dump_json(), STYLE.format(place=spot.name))
    except ToolError as exc:  # the forecast was fetched: a failed summary must not lose it
        note = "The language model could not write a summary just now, so here is the forecast."
        return WorkflowReply(f"_{note}_\n\n{table}", notes=[f"summary failed: {exc}"])
    return WorkflowReply(f"{summary.text.strip()}\n\n{table}")
