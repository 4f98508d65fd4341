"""A fake Open-Meteo: geocoding and forecast on one loopback server, counting concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

PLACES = {
    "karachi": {
        "name": "Karachi",
        "country": "Pakistan",
        "latitude": 24.86,
        "longitude": 67.01,
        "timezone": "Asia/Karachi",
        "base": 31.0,
    },
    "berlin": {
        "name": "Berlin",
        "country": "Germany",
        "latitude": 52.52,
        "longitude": 13.41,
        "timezone": "Europe/Berlin",
        "base": 4.0,
    },
    "tokyo": {
        "name": "Tokyo",
        "country": "Japan",
        "latitude": 35.69,
        "longitude": 139.69,
        "timezone": "Asia/Tokyo",
        "base": 12.0,
    },
}


class FakeOpenMeteo(FakeServer):
    """/v1/search and /v1/forecast; `delay` per request, `max_in_flight` proves overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.status = 200
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/search", self._search)
        app.router.add_get("/v1/forecast", self._forecast)

    async def _enter(self, request: web.Request) -> None:
        self.requests.append((request.path, dict(request.query)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.delay:
            await asyncio.sleep(self.delay)

    async def _search(self, request: web.Request) -> web.Response:
        await self._enter(request)
        try:
            if self.status != 200:
                return web.json_response({"error": True, "reason": "fake failure"}, status=self.status)
            place = PLACES.get(request.query.get("name", "").strip().lower())
            if place is None:
                return web.json_response({"generationtime_ms": 0.5})
            row = {k: v for k, v in place.items() if k != "base"} | {"id": 1, "country_code": "XX"}
            return web.json_response({"results": [row], "generationtime_ms": 0.5})
        finally:
            self.in_flight -= 1

    async def _forecast(self, request: web.Request) -> web.Response:
        await self._enter(request)
        try:
            if self.status != 200:
                return web.json_response({"error": True, "reason": "fake failure"}, status=self.status)
            lat = float(request.query["latitude"])
            base = next((p["base"] for p in PLACES.values() if abs(p["latitude"] - lat) < 0.01), 20.0)
            days = int(request.query.get("forecast_days", 7))
            start = dt.date(2026, 11, 25)
            daily: dict[str, Any] = {
                "time": [(start + dt.timedelta(days=i)).isoformat() for i in range(days)],
                "weather_code": [[0, 2, 61, 3][i % 4] for i in range(days)],
                "temperature_2m_max": [base + i for i in range(days)],
                "temperature_2m_min": [base - 8 + i for i in range(days)],
                "precipitation_sum": [[0.0, 0.0, 4.2, 0.3][i % 4] for i in range(days)],
                "precipitation_probability_max": [[0, 10, 80, 30][i % 4] for i in range(days)],
                "wind_speed_10m_max": [12.0 + i for i in range(days)],
            }
            return web.json_response({"latitude": lat, "timezone": "GMT", "daily": daily})
        finally:
            self.in_flight -= 1
