"""Issue 22: what a simple answer costs the database, counted by /metrics' own counters through
the running app (a signed mention in, the answer in the fake Slack), on SQLite and, on the
suite's second pass, on PostgreSQL.

A simple answer is three transactions: the front door records the delivery, the engine claims
it, and the answer's end writes everything it made (its conversation, the question and the
reply, the run and its steps, the job's finish) at once. Reads take no transaction at all.
"""

from __future__ import annotations

import pytest

from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention
from tests.test_db_counting import counts, delta


@pytest.fixture
async def quiet_bot(make_bot: MakeBot) -> Bot:
    """Leases long enough that no renewal falls inside the measured answer."""
    return await make_bot(WORK_LEASE_SECONDS="600")


def answered(slack, text: str) -> bool:
    return any(
        text in str(c.params) for c in [*slack.calls_to("chat.update"), *slack.calls_to("chat.postMessage")]
    )


async def test_a_simple_answer_costs_at_most_three_transactions(quiet_bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="Warming up."))  # the first answer opens pools, caches, connections
    await quiet_bot.event(mention("<@UBOT> first question", ts="1.1"))
    await slack.wait_for(lambda: answered(slack, "Warming up."), 10, "the first answer")
    await quiet_bot.idle()

    before = counts()
    llm.script(Reply(content="The simple answer."))
    assert (await quiet_bot.event(mention("<@UBOT> a simple question", ts="2.1")))[0] == 200
    await slack.wait_for(lambda: answered(slack, "The simple answer."), 10, "the answer")
    await quiet_bot.idle()
    spent = delta(before)

    transactions = spent["begin"] + spent["autocommit"]
    assert transactions <= 3, repr(spent)
    assert spent["begin"] == spent["commit"] + spent["rollback"], spent  # none left open
    # Everything the answer made is on file, from that one end.
    run = await queries.last_run(quiet_bot.rt.db)
    assert run.status == "ok" and run.answer_ts is not None
    assert [s.kind for s in await queries.steps(quiet_bot.rt.db, run.id)] == ["model"]
    convo = await quiet_bot.rt.db.conversations.find("T1", "C1", "2.1")
    assert convo is not None and convo.id is not None
    history = await quiet_bot.rt.db.conversations.history(convo.id)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[-1]["content"] == "The simple answer."
