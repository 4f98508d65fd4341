"""Weather from Open-Meteo (no key): geocode a place name, then fetch its daily forecast."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from tools.toolkit.context import ToolContext
from tools.toolkit.registry import ToolError, tool

WMO = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "depositing rime fog",
    51: "light drizzle",
    53: "drizzle",
    55: "dense drizzle",
    56: "freezing drizzle",
    57: "dense freezing drizzle",
    61: "light rain",
    63: "rain",
    65: "heavy rain",
    66: "freezing rain",
    67: "heavy freezing rain",
    71: "light snow",
    73: "snow",
    75: "heavy snow",
    77: "snow grains",
    80: "light showers",
    81: "showers",
    82: "violent showers",
    85: "snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with hail",
    99: "thunderstorm with heavy hail",
}
DAILY = (
    "weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,"
    "precipitation_probability_max,wind_speed_10m_max"
)


class Place(BaseModel):
    name: str
    country: str | None = None
    latitude: float
    longitude: float
    timezone: str | None = None


class Day(BaseModel):
    date: str
    summary: str
    temp_max_c: float | None
    temp_min_c: float | None
    precipitation_mm: float | None
    precipitation_chance_pct: float | None
    wind_max_kmh: float | None


class Forecast(BaseModel):
    place: Place
    days: list[Day]


async def _get_json(ctx: ToolContext, url: str, params: dict[str, Any]) -> dict[str, Any]:
    # Operator-configured base URLs are trusted, so the plain session is used here.
    async with ctx.http.get(url, params=params) as response:
        if response.status != 200:
            raise ToolError(f"the weather service answered HTTP {response.status}")
        found: dict[str, Any] = await response.json(content_type=None)
        return found


# The timeout includes waiting for the user's approval (tools/guards/gate.py): the place name leaves us.
@tool(timeout=75, egress=lambda ctx, _: [ctx.settings.open_meteo_geocoding_url])
async def geocode(ctx: ToolContext, location: Annotated[str, Field(min_length=1, max_length=100)]) -> Place:
    """Find a place by name (e.g. "Karachi") and return its coordinates and time zone."""
    url = ctx.settings.open_meteo_geocoding_url.rstrip("/") + "/v1/search"
    data = await _get_json(ctx, url, {"name": location, "count": 1, "format": "json"})
    results = data.get("results") or []
    if not results:
        raise ToolError(f"No place called {location!r} found")
    r = results[0]
    return Place(
        name=r["name"],
        country=r.get("country"),
        latitude=r["latitude"],
        longitude=r["longitude"],
        timezone=r.get("timezone"),
    )


@tool(timeout=75, egress=lambda ctx, _: [ctx.settings.open_meteo_url])  # coordinates leave us
async def get_forecast(
    ctx: ToolContext, place: Place, days: Annotated[int, Field(ge=1, le=16)] = 3
) -> Forecast:
    """Daily forecast for a geocoded place."""
    url = ctx.settings.open_meteo_url.rstrip("/") + "/v1/forecast"
    params = {
        "latitude": place.latitude,
        "longitude": place.longitude,
        "daily": DAILY,
        "timezone": "auto",
        "forecast_days": days,
    }
    daily = (await _get_json(ctx, url, params)).get("daily") or {}

    def col(key: str) -> list[Any]:
        return daily.get(key) or [None] * len(daily.get("time", []))

    rows = zip(
        daily.get("time", []),
        col("weather_code"),
        col("temperature_2m_max"),
        col("temperature_2m_min"),
        col("precipitation_sum"),
        col("precipitation_probability_max"),
        col("wind_speed_10m_max"),
        strict=False,
    )
    return Forecast(
        place=place,
        days=[
            Day(
                date=d,
                summary=WMO.get(code, "unknown") if code is not None else "unknown",
                temp_max_c=hi,
                temp_min_c=lo,
                precipitation_mm=rain,
                precipitation_chance_pct=chance,
                wind_max_kmh=wind,
            )
            for d, code, hi, lo, rain, chance, wind in rows
        ],
    )


@tool(timeout=160, status="Checking the weather…", egress=())  # its steps pass the gate themselves
async def get_weather(
    ctx: ToolContext,
    location: Annotated[str, Field(min_length=1, max_length=100)],
    days: Annotated[int, Field(ge=1, le=16)] = 3,
) -> Forecast:
    """Daily weather forecast for a place name, e.g. "Karachi" (temperatures in °C)."""
    place = await geocode(ctx, location)
    return await get_forecast(ctx, place, days)
