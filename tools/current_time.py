"""The current time in a time zone; the model has no clock of its own."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError, tool


@cache
def _zones() -> dict[str, str]:
    """City part of every zone, lower-cased: "tokyo" -> "Asia/Tokyo"."""
    return {z.rsplit("/", 1)[-1].lower().replace("_", " "): z for z in available_timezones()}


def resolve_zone(name: str) -> ZoneInfo:
    name = name.strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    match = _zones().get(name.lower().replace("_", " "))
    if match:
        return ZoneInfo(match)
    raise ToolError(f"Unknown time zone {name!r}; use the Area/City form, e.g. 'Asia/Tokyo'")


@tool(timeout=2, status="Checking the time…", egress=())
async def current_time(ctx: ToolContext, timezone: str = "UTC") -> dict[str, str]:
    """Current date and time in an IANA time zone ("Asia/Tokyo") or a city name ("Tokyo")."""
    zone = resolve_zone(timezone)
    now = datetime.now(zone)
    return {
        "timezone": zone.key,
        "iso": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z"),
    }
