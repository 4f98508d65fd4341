"""Daily token caps and the usage report, through the front door."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import update

from bot.controls.budget import allowance, resets_in
from bot.db.models import Run
from bot.db.queries.runs import cost_usd
from tests import queries
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import mention


@pytest.fixture
async def capped(make_bot: MakeBot, llm) -> Bot:
    harness = await make_bot(
        OPENAI_MODEL="gpt-test", MODEL_PRICES='{"gpt-test": [1.0, 2.0]}', USER_DAILY_TOKENS="500"
    )
    llm.default = Reply(content="An answer.", usage=(300, 100))
    return harness


async def switchboard(bot: Bot, slack, text: str, user: str = "UADMIN", channel: str = "C1") -> str:
    before = len(slack.responses)
    await bot.command("/switchboard", text, user=user, channel=channel, response_url=slack.response_url())
    await bot.idle()
    (reply,) = slack.responses[before:]
    return reply["text"]


async def test_a_used_up_cap_refuses_before_the_model_call(capped: Bot, slack, llm) -> None:
    for i in (1, 2):  # 400 tokens each: the second starts at 400 < 500 and is allowed
        await capped.event(mention("<@UBOT> question", ts=f"300.{i}"))
        await capped.idle()
    assert len(llm.requests) == 2
    await capped.event(mention("<@UBOT> one more", ts="300.3"))
    await capped.idle()
    assert len(llm.requests) == 2  # no model call
    refusal = str(slack.posted(channel="C1")[-1])
    assert "used your 500 tokens for today" in refusal and "resets at 00:00 UTC, in" in refusal
    runs = await queries.runs(capped.rt.db)
    assert [r.status for r in runs] == ["ok", "ok", "refused"]
    await capped.command("/ask", "and this?", user="U1", channel="C1", response_url=slack.response_url())
    await capped.idle()
    assert len(llm.requests) == 2 and "resets at 00:00 UTC" in slack.responses[-1]["text"]

    # another person is not affected; an admin can lift the cap for one channel
    await capped.event(mention("<@UBOT> hi", ts="300.4", user="U2"))
    await capped.idle()
    assert len(llm.requests) == 3
    assert "now `0`" in await switchboard(capped, slack, "config set user_daily_tokens 0")
    await capped.event(mention("<@UBOT> again", ts="300.5"))
    await capped.idle()
    assert len(llm.requests) == 4


async def test_a_channel_cap_set_by_an_admin(capped: Bot, slack, llm) -> None:
    await switchboard(capped, slack, "config set channel_daily_tokens 300", channel="C2")
    await capped.event(mention("<@UBOT> one", ts="310.1", channel="C2"))
    await capped.idle()
    await capped.event(mention("<@UBOT> two", ts="310.2", channel="C2", user="U2"))
    await capped.idle()
    assert len(llm.requests) == 1
    assert "This channel has used its 300 tokens" in str(slack.posted(channel="C2")[-1])


async def test_the_usage_report_matches_the_runs(capped: Bot, slack, llm) -> None:
    for i, user in enumerate(("U1", "U1", "U2"), start=1):
        await capped.event(mention("<@UBOT> question", ts=f"320.{i}", user=user))
        await capped.idle()
    runs = await queries.runs(capped.rt.db)
    assert all(r.prompt_tokens == 300 and r.completion_tokens == 100 for r in runs)
    assert all(r.cost_usd == pytest.approx(0.0005) for r in runs)  # 300 * $1 + 100 * $2 per million
    async with capped.rt.db.session() as s:  # the first run happened ten days ago
        await s.exec(
            update(Run).where(Run.id == runs[0].id).values(started_at=datetime.now(UTC) - timedelta(days=10))
        )
        await s.commit()

    mine = await switchboard(capped, slack, "usage", user="U1")
    lines = mine.splitlines()
    assert "<@U1>" in lines[0]
    assert lines[1] == "• today: 400 tokens · $0.0005 · 1 runs"
    assert lines[2] == "• 7 days: 400 tokens · $0.0005 · 1 runs"
    assert lines[3] == "• 30 days: 800 tokens · $0.0010 · 2 runs"

    assert "Only workspace admins" in await switchboard(capped, slack, "usage all", user="U1")
    everyone = (await switchboard(capped, slack, "usage all")).splitlines()
    assert everyone[1] == "• today: 800 tokens · $0.0010 · 2 runs"
    assert everyone[3] == "• 30 days: 1,200 tokens · $0.0015 · 3 runs"
    channel = (await switchboard(capped, slack, "usage <#C2|random>")).splitlines()
    assert channel[3] == "• 30 days: 0 tokens · $0.0000 · 0 runs"
    assert "Usage:" in await switchboard(capped, slack, "usage everybody")


def test_allowance_takes_the_tightest_cap() -> None:
    now = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    assert allowance(100, 0, 100, 0, now).remaining is None
    assert allowance(100, 500, 900, 1000, now).remaining == 100
    refused = allowance(0, 500, 1000, 1000, now)
    assert refused.remaining == 0 and "channel" in (refused.refusal or "")
    assert resets_in(now) == "00:00 UTC, in 2 h 30 min"
    assert cost_usd({"m": (1.0, 2.0)}, "m", 1_000_000, 0) == 1.0
    assert cost_usd({}, "unknown", 10, 10) is None
