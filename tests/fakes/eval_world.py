"""The fakes an eval suite runs against without the internet: a scripted model that behaves like
a plausible one (and wanders on purpose on some runs), Open-Meteo, SearXNG and a web page.

`python -m tests.fakes.eval_world` serves them all on 127.0.0.1 and prints the settings that
point Switchboard at them (`export NAME=value` lines); it runs until interrupted. The test suite
uses the same `DemoModel` in-process (tests/test_evals.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections import Counter
from typing import Any

from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall
from tests.fakes.search import FakeSearxng
from tests.fakes.weather import FakeOpenMeteo
from tests.fakes.web import FakeWeb

CITIES = ("Karachi", "Berlin", "Tokyo")
URL = re.compile(r'"url": "([^"]+)"')
TITLE = re.compile(r'"title": "([^"]+)"')


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _city(text: str) -> str:
    return next((c for c in CITIES if c.lower() in text.lower()), "Karachi")


class DemoModel:
    """Decides like a small model would from the question and the tool results so far.

    Deterministic per question: its n-th time seeing a weather question, n % 5 == 2 sends invalid
    arguments first and n % 5 == 4 picks the weather_report workflow tool instead of get_weather;
    the n-th research question with n % 5 == 3 searches the same thing twice at once.
    """

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        offered = {t["function"]["name"] for t in body.get("tools") or []}
        last = messages[-1]
        if not offered:  # a summarize step, or the closing answer after a limit
            return Reply(content=self._summary(_text(last.get("content"))))
        question = next(_text(m["content"]) for m in reversed(messages) if m["role"] == "user")
        called = [
            c["function"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []
        ]
        results = [_text(m["content"]) for m in messages if m["role"] == "tool"]
        if last["role"] == "user":
            self.seen[question] += 1
            return self._first(question, self.seen[question], offered)
        return self._next(called, results)

    def _first(self, question: str, n: int, offered: set[str]) -> Reply:
        q = question.lower()
        if "weather" in q or "forecast" in q:
            city = _city(question)
            if n % 5 == 2:
                return Reply(tool_calls=[ToolCall("get_weather", {"city": city})])
            if n % 5 == 4 and "weather_report" in offered:
                return Reply(tool_calls=[ToolCall("weather_report", {"place": city})])
            return Reply(tool_calls=[ToolCall("get_weather", {"location": city, "days": 2})])
        if "time" in q:
            return Reply(tool_calls=[ToolCall("current_time", {"timezone": _city(question)})])
        if "channel" in q:
            return Reply(tool_calls=[ToolCall("read_channel", {"channel": "#general"})])
        if match := re.search(r"https?://\S+", question):
            url = match[0].rstrip(".,)")
            if "post" in q:  # a write: the gate asks the requester first
                write = {"url": url, "method": "POST", "body": {"note": "from the eval"}}
                return Reply(tool_calls=[ToolCall("call_api", write)])
            return Reply(tool_calls=[ToolCall("call_api", {"url": url})])
        if "summarize" in q or "tl;dr" in q:
            return Reply(tool_calls=[ToolCall("summarize", {"text": question})])
        if "search" in q or "research" in q or "what's new" in q:
            search = ToolCall("search_web", {"query": question[:200]})
            return Reply(tool_calls=[search, search] if n % 5 == 3 else [search])
        return Reply(content=f"You said: {question[:200]}")

    def _next(self, called: list[dict[str, Any]], results: list[str]) -> Reply:
        previous, result = called[-1], results[-1]
        if previous["name"] == "get_weather" and "invalid arguments" in result:
            city = json.loads(previous["arguments"]).get("city", "Karachi")
            return Reply(tool_calls=[ToolCall("get_weather", {"location": city, "days": 2})])
        if previous["name"] == "search_web" and not any(c["name"] == "call_api" for c in called):
            if url := URL.search(result):
                return Reply(tool_calls=[ToolCall("call_api", {"url": url[1]})])
        return Reply(content=self._summary(" ".join(results)))

    def _summary(self, text: str) -> str:
        found = [c for c in CITIES if c in text] + TITLE.findall(text)[:2]
        if "Bolt for Python 1.30" in text and "Bolt" not in " ".join(found):
            found.append("Bolt for Python 1.30")
        said = ", ".join(dict.fromkeys(found)) or "nothing I can name"
        return f"Here is the short answer, from what the tools returned: {said}."


class EvalWorld:
    """The model, weather, search and web fakes, started together."""

    def __init__(self) -> None:
        self.llm, self.weather = FakeOpenAI(), FakeOpenMeteo()
        self.search, self.web = FakeSearxng(), FakeWeb()
        self.model = DemoModel()
        self.llm.responder = self.model

    async def start(self) -> EvalWorld:
        for fake in (self.llm, self.weather, self.search, self.web):
            await fake.start()
        self.search.default = [
            {"url": f"{self.web.url}/article", "title": "Bolt for Python 1.30", "content": "say_stream"},
            {"url": f"{self.web.url}/api/data", "title": "Bolt data", "content": "numbers"},
        ]
        return self

    async def stop(self) -> None:
        for fake in (self.llm, self.weather, self.search, self.web):
            await fake.stop()

    def env(self) -> dict[str, str]:
        return {
            "OPENAI_BASE_URL": self.llm.base_url,
            "OPENAI_API_KEY": "sk-fake-eval-world",
            "OPEN_METEO_URL": self.weather.url,
            "OPEN_METEO_GEOCODING_URL": self.weather.url,
            "SEARXNG_URL": self.search.url,
            "TOOL_HTTP_ALLOW_HOSTS": f"127.0.0.1:{self.web.port}",
        }


async def main() -> None:
    world = await EvalWorld().start()
    for name, value in world.env().items():
        print(f"export {name}={value}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await world.stop()


if __name__ == "__main__":
    asyncio.run(main())
