"""`switchboard eval`: the shipped suite through both paths against the fakes, every metric read
from the runs it made; record/replay at the gate; prices from the vendored table."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bot.ops.eval_suite import evaluate
from bot.settings import DEFAULT_PRICES, Settings, load_settings
from orchestrators.evals.cases import CaseError, parse_cases
from orchestrators.evals.results import report
from orchestrators.evals.tape import Tape
from orchestrators.evals.traces import StepView, misuse, tool_sequence
from tests.fakes.eval_world import DemoModel, EvalWorld

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "evals" / "cases.yml"


@pytest.fixture
async def world():
    w = await EvalWorld().start()
    yield w
    await w.stop()
    assert w.llm.schema_errors == [] and w.llm.shape_errors == []


def settings_for(world: EvalWorld, **env: str) -> Settings:
    return load_settings({**world.env(), "LLM_MAX_RETRIES": "0", **env}, need_slack=False)


async def test_shipped_suite_measures_both_paths_from_real_runs(world: EvalWorld) -> None:
    cases = parse_cases(SUITE.read_text())
    attempts = await evaluate(settings_for(world), cases, repeat=5)
    by = {r.case.name: r for r in report(cases, attempts)}

    assert all(a.passed for a in attempts), [(a.case, a.path, a.status, a.failed_checks) for a in attempts]
    assert {c.name for c in cases if not c.skip} == {a.case for a in attempts}
    assert by["summarize a channel"].paths == {}  # skipped, and says why
    # Model calls are the ones the fake model served: counted from the runs, not estimated.
    assert sum(a.llm_calls for a in attempts) == len(world.llm.requests)
    weather = by["weather Karachi"].paths
    # The model wanders (the demo model picks weather_report on its 4th run, bad arguments on
    # its 2nd): more than one tool sequence; the workflow takes one.
    assert len(weather["llm"].sequences) > 1 and len(weather["workflow"].sequences) == 1
    assert weather["llm"].misuse["invalid_arguments"] == 1
    assert by["research Bolt"].paths["llm"].misuse["repeated_call"] == 1  # one search sent twice
    assert weather["workflow"].misuse_total == 0
    assert weather["llm"].cost_usd is not None and weather["workflow"].cost_usd is not None
    assert weather["workflow"].cost_usd < weather["llm"].cost_usd
    assert weather["workflow"].llm_calls == 1 and weather["llm"].llm_calls >= 2
    assert weather["llm"].latency_p95_ms >= weather["llm"].latency_p50_ms > 0
    verdict = by["weather Karachi"].verdict or ""
    assert verdict.startswith("workflow: same answers,") and "cheaper" in verdict
    assert f"1 sequence vs {len(weather['llm'].sequences)}" in verdict


async def test_a_failed_check_is_reported_per_attempt(world: EvalWorld) -> None:
    cases = parse_cases(
        "- name: wrong\n  request: weather in Berlin\n  workflow: /weather Berlin\n"
        "  checks: {contains: [Lisbon], tools_sequence: [get_forecast, geocode]}\n"
    )
    attempts = await evaluate(settings_for(world), cases, repeat=1)
    assert [a.passed for a in attempts] == [False, False]
    summary = report(cases, attempts)[0].paths["workflow"]
    assert summary.failures == {"tools not in order get_forecast → geocode": 1, "answer lacks 'Lisbon'": 1}


async def test_replay_serves_the_tape_and_reports_a_miss_without_a_live_call(
    world: EvalWorld, tmp_path: Path
) -> None:
    recorded = parse_cases("- name: karachi\n  request: weather in Karachi\n  workflow: /weather Karachi\n")
    tape = Tape("record")
    live = await evaluate(settings_for(world), recorded, tape=tape)
    tape.save(tmp_path / "tape.json")
    calls_before = len(world.weather.requests)
    assert calls_before > 0 and any(k.startswith("get_weather ") for k in tape.entries)

    world.llm.responder = DemoModel()  # the same model again, on identical tool outputs
    replay = Tape.load(tmp_path / "tape.json")
    cases = recorded + parse_cases("- name: tokyo\n  request: weather in Tokyo\n")
    attempts = await evaluate(settings_for(world), cases, tape=replay)

    assert len(world.weather.requests) == calls_before  # nothing went to the weather service
    assert [a.answer for a in attempts[:2]] == [a.answer for a in live]
    summaries = {r.case.name: r.paths for r in report(cases, attempts)}
    assert summaries["karachi"]["llm"].replay_misses == 0 and replay.hits >= 3
    assert summaries["tokyo"]["llm"].replay_misses == 1
    assert replay.misses == ['get_weather {"days": 2, "location": "Tokyo"}']


async def test_an_unknown_model_costs_price_unknown_never_zero(world: EvalWorld) -> None:
    cases = parse_cases("- name: hi\n  request: Hello\n  checks: {max_cost_usd: 1}\n")
    attempts = await evaluate(settings_for(world, OPENAI_MODEL="local-llama"), cases)
    assert attempts[0].prompt_tokens > 0 and attempts[0].cost_usd is None
    assert attempts[0].failed_checks == ["cost ceiling set, but the model's price is unknown"]
    assert report(cases, attempts)[0].paths["llm"].cost_usd is None


def test_prices_come_from_the_vendored_litellm_table_with_overrides() -> None:
    table = json.loads((ROOT / "bot" / "controls" / "pricing" / "model_prices.json").read_text())
    assert DEFAULT_PRICES["gpt-5.4-mini"] == (0.75, 4.5)  # 7.5e-07 and 4.5e-06 per token upstream
    assert set(DEFAULT_PRICES) == set(table)
    overridden = load_settings({"MODEL_PRICES": '{"gpt-5.4-mini": [1, 2], "mine": [0, 0]}'}, need_slack=False)
    assert overridden.model_prices["gpt-5.4-mini"] == (1.0, 2.0) and overridden.model_prices["mine"] == (0, 0)


def test_sequences_are_rounds_between_model_calls_and_misuse_is_read_from_errors() -> None:
    steps = [
        StepView("model", "m"),
        StepView("tool", "get_weather", '{"city": "X"}', "invalid arguments for get_weather: city: unknown"),
        StepView("model", "m"),
        StepView("tool", "search_web", '{"query": "a"}'),
        StepView("tool", "nope", "{}", "There is no tool called 'nope'. Available tools: a."),
        StepView("tool", "search_web", '{"query": "a"}'),
        StepView("tool", "call_api", "{}", "Not sent: this run has read non-public content (C1) and x"),
        StepView("model", "m"),
    ]
    assert tool_sequence(steps) == ("get_weather", "call_api+nope+search_web+search_web")
    assert misuse(steps) == {"invalid_arguments": 1, "unknown_tool": 1, "repeated_call": 1, "refused": 1}


def test_malformed_suites_are_refused_with_the_case_named() -> None:
    with pytest.raises(CaseError, match="case 'x': unknown check 'contain'"):
        parse_cases("- name: x\n  request: hi\n  checks: {contain: [a]}\n")
    with pytest.raises(CaseError, match="workflow must be a command line"):
        parse_cases("- name: y\n  request: hi\n  workflow: weather\n")


async def test_the_cli_writes_one_self_contained_html_page(world: EvalWorld, tmp_path: Path) -> None:
    html, out = tmp_path / "report.html", tmp_path / "report.json"
    suite = tmp_path / "suite.yml"
    suite.write_text("- name: karachi\n  request: weather in Karachi\n  workflow: /weather Karachi\n")
    env = {**os.environ, **world.env(), "LLM_MAX_RETRIES": "0", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "eval", str(suite), "--repeat", "2", "--json", "--html", str(html),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    out.write_bytes(stdout)
    data = json.loads(stdout)
    assert data["cases"][0]["paths"]["workflow"]["runs"] == 2
    page = html.read_text()
    assert page.count("<svg") == 4 and "karachi" in page and "workflow: " in page
    assert "<script" not in page and "<link" not in page and "src=" not in page


async def test_daily_caps_apply_to_evals_as_in_slack(world: EvalWorld) -> None:
    cases = parse_cases("- name: hi\n  request: Hello\n")
    attempts = await evaluate(settings_for(world, USER_DAILY_TOKENS="50"), cases, repeat=2)
    assert [a.status for a in attempts] == ["ok", "refused"]  # the first run used up the cap
    assert "You have used your 50 tokens for today" in attempts[1].answer and not attempts[1].passed


async def test_a_call_the_gate_refuses_is_counted_and_nothing_is_sent(world: EvalWorld) -> None:
    cases = parse_cases(f"- name: post\n  request: Please post a note to {world.web.url}/api/echo\n")
    attempts = await evaluate(settings_for(world), cases)
    summary = report(cases, attempts)[0].paths["llm"]
    assert summary.misuse["refused"] == 1  # a write needs approval, and evals ask nobody
    assert world.web.received == []
    errors = [s.error for s in attempts[0].steps if s.kind == "tool"]
    assert len(errors) == 1 and (errors[0] or "").startswith("call_api changes things")
