"""Issue 22, item 1: one person's questions hold at most USER_MAX_CONCURRENT_RUNS model runs at
once, decided by the work engine's claim; the rest wait for a slot to free (woken, not polling),
and another person's question is not queued behind them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from bot.db.queue.jobs import choose
from tests.conftest import MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention

SLOTS = 3
MANY = 50


class PerPerson:
    """The fake model's responder: counts each person's model calls in flight (the question text
    starts with the person's id) and answers the question it was asked."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.order: list[str] = []

    async def __call__(self, body: dict[str, Any]) -> Reply:
        question = body["messages"][-1]["content"]
        person = question.split("-")[0]
        self.order.append(question)
        self.in_flight[person] += 1
        self.most[person] = max(self.most[person], self.in_flight[person])
        try:
            await asyncio.sleep(self.delay)  # the model thinking; the slot is held meanwhile
        finally:
            self.in_flight[person] -= 1
        return Reply(content=f"answer to {question}")


def ts(i: int) -> str:
    return f"1700000400.{i:06d}"


async def test_50_concurrent_questions_from_one_person_use_at_most_their_slots(
    make_bot: MakeBot, slack, llm
) -> None:
    bot = await make_bot(USER_MAX_CONCURRENT_RUNS=str(SLOTS))
    model = PerPerson(delay=0.3)
    llm.responder = model
    questions = [f"U1-q{i}" for i in range(MANY)]
    acks = await asyncio.gather(
        *(bot.event(mention(f"<@UBOT> {q}", ts=ts(i)), event_id=f"Ev{i}") for i, q in enumerate(questions))
    )
    assert [status for status, _ in acks] == [200] * MANY
    await llm.wait_for_requests(MANY, timeout=120)
    await bot.idle(timeout=120)

    assert model.most["U1"] == SLOTS  # the cap held, and was used: they ran side by side
    assert sorted(model.order) == sorted(questions)  # each asked once: nothing lost or doubled
    for i, q in enumerate(questions):
        answers = [p["text"] for p in slack.posted(channel="C1", thread_ts=ts(i))]
        assert answers == [f"answer to {q}"], q


async def test_another_persons_question_is_not_queued_behind_a_busy_person(
    make_bot: MakeBot, slack, llm
) -> None:
    bot = await make_bot(USER_MAX_CONCURRENT_RUNS=str(SLOTS))
    model = PerPerson(delay=0.3)
    llm.responder = model
    backlog = [f"U1-q{i}" for i in range(30)]
    await asyncio.gather(
        *(bot.event(mention(f"<@UBOT> {q}", ts=ts(i)), event_id=f"Ev{i}") for i, q in enumerate(backlog))
    )
    await llm.wait_for_requests(1, timeout=60)  # U1's backlog holds its slots now
    status, _ = await bot.event(mention("<@UBOT> U2-hello", user="U2", ts=ts(999)), event_id="EvU2")
    assert status == 200
    await llm.wait_for_requests(len(backlog) + 1, timeout=120)
    await bot.idle(timeout=120)

    # U1's 30 questions run 3 at a time (10 rounds); U2's starts with the round after it arrived.
    assert model.order.index("U2-hello") <= 2 * SLOTS, model.order
    assert model.most == Counter({"U1": SLOTS, "U2": 1})
    assert [p["text"] for p in slack.posted(channel="C1", thread_ts=ts(999))] == ["answer to U2-hello"]


def test_a_claim_chooses_one_per_queue_and_at_most_the_slots_per_person() -> None:
    """The claim's rule as a plain function: (id, queue, person, state, holder, until)."""
    now = 1000.0
    running = [("q1", "U1")]  # U1 runs one already, in q1
    candidates = [
        (1, "q1", "U1", "pending", None, 0.0),  # q1 busy: waits
        (2, "q2", "U1", "pending", None, 0.0),
        (3, "q2", "U1", "pending", None, 0.0),  # q2 taken by 2 in this claim: waits
        (4, "q3", "U1", "pending", None, 0.0),  # with 2 slots U1 has none left for it
        (5, "q4", "U2", "pending", "recorder", now + 2),  # reserved for its recorder
        (6, "q4", "U2", "pending", None, 0.0),  # behind the reserved one in its queue
        (7, "q5", "U3", "pending", None, 0.0),
    ]
    chosen, held_back = choose(candidates, running, "me", now, slots=2, limit=10)
    assert chosen == [2, 7] and held_back  # U1: one running + job 2 fills its 2 slots
    assert choose(candidates, running, "recorder", now, slots=3, limit=10)[0] == [2, 4, 5, 7]
    assert choose(candidates, [], "me", now, slots=0, limit=2) == ([1, 2], False)  # the limit stopped it
