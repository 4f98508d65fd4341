"""Issue 22: bench/load.py runs end to end on a tiny load and reports every figure, sanely.

Nothing here depends on speed: the figures are checked for shape and consistency, not size, and
the only bound is the benchmark's own wait for late answers (its allowance plus 30 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_tiny_load_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    args = ["--rates", "2", "--duration", "2", "--burst", "5", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    config = report["config"]
    assert config["database"] == "sqlite+aiosqlite" and config["processes"] == 1
    assert config["answer_allowance_s"] > 0 and config["tokens"] > 0
    assert [p["phase"] for p in report["phases"]] == ["2/s", "burst 5"]
    assert [p["rate"] for p in report["phases"]] == [2, None]
    assert [p["deliveries"] for p in report["phases"]] == [4, 5]

    for phase in report["phases"]:
        n = phase["deliveries"]
        assert phase["failed_deliveries"] == {"bot": 0, "floor": 0}
        for side in ("bot", "floor"):
            ack = phase["ack_ms"][side]
            assert 0 < ack["p50"] <= ack["p99"] <= ack["max"]
        bot_p99, floor_p99 = phase["ack_ms"]["bot"]["p99"], phase["ack_ms"]["floor"]["p99"]
        assert phase["ack_ratio"]["p99"] == pytest.approx(bot_p99 / floor_p99, rel=0.1)  # ms are rounded
        assert 0 <= phase["acks_over_3s"] <= n
        assert phase["answers"] == n  # every answer arrived, on time or late
        assert 0 <= phase["answers_on_time"] <= n
        assert 0 < phase["answer_s"]["p50"] <= phase["answer_s"]["p99"]
        assert phase["cpu_seconds"] > 0
        assert phase["counted_seconds"] >= phase["seconds"] > 0
        assert phase["cpu_seconds_per_answer"] == pytest.approx(phase["cpu_seconds"] / n, abs=0.01)
        assert phase["peak_rss_mb"] > 10  # a Python process with the bot loaded
        assert isinstance(phase["slack_connections"], int) and phase["slack_connections"] >= 0
        assert isinstance(phase["model_connections"], int) and phase["model_connections"] >= 0
        db = phase["db"]
        assert db["insert"] > 0 and db["select"] > 0  # every answer reads and writes
        statements = sum(db[k] for k in ("select", "insert", "update", "delete", "other"))
        assert phase["db_statements_per_answer"] == round(statements / n, 3)
        assert phase["db_transactions_per_answer"] == round((db["begin"] + db["autocommit"]) / n, 3)

    assert set(report["goals"]) == {
        "ack_p99_at_20_per_s_within_3x_or_50ms",
        "ack_p99_burst_within_3x_or_100ms",
        "highest_sustained_rate_on_time_and_p99_under_1s",
    }
    assert report["goals"]["ack_p99_at_20_per_s_within_3x_or_50ms"] is None  # no 20/s phase ran
    assert isinstance(report["goals"]["ack_p99_burst_within_3x_or_100ms"], bool)
    assert report["goals"]["highest_sustained_rate_on_time_and_p99_under_1s"] in (None, 2)
    assert "ack ms bot" in done.stdout and "goals:" in done.stdout
