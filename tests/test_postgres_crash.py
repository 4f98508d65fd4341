"""Issue 22, item 5: Postgres faults lose nothing, end to end. Real bot processes as an operator
runs them (two web processes behind a round-robin balancer, one clock) on a throwaway server of
the test's own, through bench/crash_recovery.py at a small count: every mention is answered
exactly once, no placeholder is left, no delivery gets a 5xx, nothing apologises (the model and
Slack never fail here, and the database's faults are ridden out, so any apology blames wrongly),
and no log line is an ERROR or a duplicate key."""

from __future__ import annotations

import os

import pytest

from bench.crash_recovery import Outcome, Scenario, run
from tests.postgres import PGBOUNCER

needs_postgres = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").strip(), reason="TEST_DATABASE_URL names no PostgreSQL server"
)
pytestmark = [needs_postgres]
N = 30


def fleet(**fault: object) -> Scenario:
    """N mentions to 2 web processes and a clock, on a server of the test's own. Leases of 10 s:
    on a loaded 2-core machine a 2 s lease lapses while its holder is starved (a double answer)."""
    return Scenario(n=N, processes=2, clock=True, postgres=True, lease=10.0, **fault)  # type: ignore[arg-type]


def assert_nothing_lost(outcome: Outcome) -> None:
    examples = "; ".join(outcome.examples)
    assert outcome.once == N, f"lost {outcome.lost}, doubled {outcome.doubled}: {examples}"
    assert outcome.placeholders == 0, examples
    assert outcome.apologies == {}, f"apologies by whom they blame: {outcome.apologies}"
    assert outcome.server_errors == 0, "a delivery was answered 5xx"
    assert outcome.duplicate_key_lines() == []
    assert outcome.error_lines() == []


async def test_a_fast_restart_mid_traffic_redoes_the_work_whose_connection_died() -> None:
    outcome = await run(fleet(fault="restart", faults=2))
    assert_nothing_lost(outcome)
    assert "database unavailable" in outcome.log, "no restart reached the bots: the test proved nothing"


@pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed")
async def test_behind_pgbouncer_in_transaction_mode_a_restart_loses_nothing() -> None:
    outcome = await run(fleet(fault="restart", faults=1, pgbouncer=True))
    assert_nothing_lost(outcome)
    assert "prepared statement" not in outcome.log + outcome.server_log


async def test_sigterm_hands_the_answers_in_flight_over_to_the_other_process() -> None:
    """Answers that outlast the drain are cancelled, their leases released, and finished by the
    other process (adopting the placeholder): nobody is told to ask again."""
    outcome = await run(fleet(fault="sigterm", faults=1, drain=1.0, long_answer=8.0))
    assert_nothing_lost(outcome)
    assert "were handed over" in outcome.log, "nothing was in flight at the SIGTERM: the test proved nothing"


async def test_sigkill_of_a_web_process_mid_answer_loses_nothing() -> None:
    outcome = await run(fleet(fault="kill", faults=1))
    assert_nothing_lost(outcome)
    assert "redoing it after its process stopped" in outcome.log, "no kill landed mid-answer"
