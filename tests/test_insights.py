"""`switchboard insights` on a seeded database: the planted habit is found, priced, matched to
the workflow that covers it or proposed as a candidate; admins see the same in App Home."""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import timedelta

import pytest

from bot.db.models import utcnow
from bot.db.queries.runs import run_values
from bot.ops.insights_report import insights, main
from bot.runtime import open_database
from bot.settings import load_settings
from orchestrators.evals.cases import parse_cases
from orchestrators.evals.insights import WORKFLOW_TOOLS
from orchestrators.workflows.command_registry import COMMANDS
from tests.conftest import Bot

THREADS = itertools.count(1_700_000_000)
PLANTED = "What time is it in Tokyo, and will it rain there?"


def model(prompt: int = 100, completion: int = 20) -> dict:
    return {"kind": "model", "name": "gpt-5.4-mini", "prompt_tokens": prompt, "completion_tokens": completion}


def tool(name: str, arguments: str = "{}", error: str | None = None) -> dict:
    return {"kind": "tool", "name": name, "arguments": arguments, "error": error}


async def seed_run(db, trigger: str, steps: list[dict], *, request: str | None = None, tokens=(1000, 200),
                   status: str = "ok", age: timedelta = timedelta(0)) -> int:  # fmt: skip
    conversation_id = None
    if request is not None:
        convo = await db.conversations.get_or_create("T1", "C1", f"{next(THREADS)}.000100")
        conversation_id = convo.id
        await db.conversations.add_messages(convo.id, [{"role": "user", "content": request}])
    values = run_values(trigger, team_id="T1", channel_id="C1", user_id="U1", model="gpt-5.4-mini",
                        conversation_id=conversation_id)  # fmt: skip
    values["started_at"] = utcnow() - age
    run_id = await db.runs.insert(values)
    await db.runs.finish(run_id, status, steps=steps, model="gpt-5.4-mini", started_at=values["started_at"],
                         prompt_tokens=tokens[0], completion_tokens=tokens[1], llm_calls=2)  # fmt: skip
    return run_id


async def seed(db) -> None:
    planted = [model(), tool("current_time", '{"timezone": "Tokyo"}'), tool("geocode"), tool("get_forecast"),
               tool("get_weather", '{"location": "Tokyo"}'), model()]  # fmt: skip
    for i in range(6):
        await seed_run(db, "mention", planted, request=f"{PLANTED} ({i % 2})", status="ok" if i else "failed")
    weather = [
        model(),
        tool("geocode"),
        tool("get_forecast"),
        tool("get_weather", '{"location": "Oslo"}'),
        model(),
    ]
    misused = [
        model(),
        tool("get_weather", '{"city": "Oslo"}', "invalid arguments for get_weather: city"),
        *weather,
    ]
    await seed_run(db, "dm", weather, request="weather in Oslo?")
    await seed_run(db, "thread", misused, request="and tomorrow in Oslo?")
    await seed_run(db, "/weather", [tool("geocode"), tool("get_forecast"), model(), tool("summarize")],
                   tokens=(250, 50))  # fmt: skip
    old = [model(), tool("search_web"), model()]
    for _ in range(9):  # older than the period: not counted
        await seed_run(db, "mention", old, request="old news", age=timedelta(days=40))


async def test_insights_finds_the_planted_sequence_and_what_covers_it(db_url: str, tmp_path, capsys) -> None:
    settings = load_settings({"DATABASE_URL": db_url, "AUTO_MIGRATE": "true"}, need_slack=False)
    db = open_database(settings)
    await db.prepare(auto_migrate=True)
    try:
        await seed(db)
        found = await insights(db, timedelta(days=30))
    finally:
        await db.close()

    assert found.llm_runs == 8  # the /weather run is a workflow run; the old ones are outside --since
    top = found.habits[0]
    assert top.sequence == ("current_time+geocode+get_forecast+get_weather",)
    assert (top.runs, top.share, top.failure_rate) == (6, 6 / 8, 1 / 6)
    assert sorted(top.requests) == [f"{PLANTED} (0)", f"{PLANTED} (1)"]  # newest first
    assert top.covered_by is None and found.candidates == [top]  # current_time: no workflow does both
    assert top.cost_usd == pytest.approx(
        0.00165
    )  # 1000 in, 200 out at gpt-5.4-mini's $0.75 / $4.50 per million
    covered = {h.sequence: h for h in found.habits[1:]}
    plain = covered[("geocode+get_forecast+get_weather",)]
    assert plain.covered_by == "/weather" and plain.misuse_rate == 0
    assert plain.note() == "/weather does this for 1/4 of the cost"  # $0.000413 vs $0.00165
    misused = covered[("get_weather", "geocode+get_forecast+get_weather")]
    assert misused.misuse_rate == 1 and misused.covered_by == "/weather"

    args = argparse.Namespace(since="30d", cases=tmp_path / "candidates.yml")
    assert await main(settings, args) == 0
    printed = capsys.readouterr().out
    assert "6 runs (75%)" in printed and "no workflow does this: a candidate" in printed
    cases = parse_cases(args.cases.read_text())  # the generated suite is one `switchboard eval` runs
    assert sorted(c.request for c in cases) == [f"{PLANTED} (0)", f"{PLANTED} (1)"]
    assert cases[0].checks["llm"].tools == ("current_time", "geocode", "get_forecast", "get_weather")


def test_every_workflow_command_says_which_tools_it_stands_for() -> None:
    assert set(WORKFLOW_TOOLS) == set(COMMANDS) - {"/ask"}  # /ask is the model itself


async def test_admins_see_the_summary_in_app_home(bot: Bot, slack) -> None:
    await seed(bot.rt.db)
    for user in ("UADMIN", "U1"):
        await bot.event(
            {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home", "event_ts": "1.1"}
        )
    await bot.idle()
    admin, member = (json.dumps(slack.home_views[u]["blocks"]) for u in ("UADMIN", "U1"))
    assert "LLM or code?" in admin and "current_time+geocode+get_forecast+get_weather" in admin
    assert "LLM or code?" not in member
