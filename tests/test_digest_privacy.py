"""Issue 10, findings 1 and 3: digests follow the audience rule; only creators and admins manage them."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Bot, MakeBot
from tests.test_digest import digest, digests_posted
from tests.test_privacy import SECRET, private_leadership


@pytest.fixture
async def pbot(make_bot: MakeBot, slack) -> Bot:
    private_leadership(slack)  # G1 #leadership and G2 #board: private, U1 and U2; C9: Slack Connect
    slack.add_channel("G4", "leaders-digest", members=("U1", "U2"), is_private=True)
    return await make_bot(scheduler={"retry_delay": 0})


def dms_to(slack, user: str) -> list[str]:
    return [m["text"] for m in slack.posted(channel=f"D{user}")]


async def test_a_private_digest_into_a_public_or_shared_channel_is_refused(pbot: Bot, slack) -> None:
    text = await digest(pbot, slack, "add <#C1|general> daily 09:00 from <#G1|leadership>", user="U2")
    assert "can't post a digest of #leadership in #general" in text and "readable by everyone" in text
    text = await digest(pbot, slack, "add <#C9|partners> daily 09:00 from <#C2|random>", user="U1")
    assert "shared with another organisation" in text
    assert await pbot.rt.db.digests.all() == []
    text = await digest(pbot, slack, "add <#G4|leaders-digest> daily 09:00 from <#G1|leadership>", user="U2")
    assert "Digest 1 set" in text  # every member of the target may read the source


async def test_only_the_creator_or_an_admin_runs_or_removes(pbot: Bot, slack, llm) -> None:
    slack.channels["G4"].members.add("UADMIN")
    slack.channels["G1"].members.add("UADMIN")
    slack.add_user("U3", "carol")
    for ch in ("G1", "G4"):
        slack.channels[ch].members.add("U3")
    await digest(pbot, slack, "add <#G4|leaders-digest> daily 09:00 from <#G1|leadership>", user="U2")
    assert "Only <@U2>" in await digest(pbot, slack, "run 1", user="U3")
    assert "Only <@U2>" in await digest(pbot, slack, "remove 1", user="U3")
    assert digests_posted(slack, "G4") == []
    assert "posted" in await digest(pbot, slack, "run 1", user="UADMIN")
    assert "posted" in await digest(pbot, slack, "run 1", user="U2")
    assert len(digests_posted(slack, "G4")) == 2
    assert "removed" in await digest(pbot, slack, "remove 1", user="UADMIN")


async def test_a_schedule_whose_creator_left_the_source_is_paused(pbot: Bot, slack, llm) -> None:
    await digest(pbot, slack, "add <#G4|leaders-digest> daily 09:00 from <#G1|leadership>", user="U2")
    slack.channels["G1"].members.discard("U2")  # the creator leaves #leadership
    pbot.rt.memberships.forget()
    text = await digest(pbot, slack, "run 1", user="U2")
    assert "paused" in text and "not a member of" in text
    assert digests_posted(slack, "G4") == [] and llm.requests == []
    (told,) = dms_to(slack, "U2")
    assert "digest 1" in told and "paused" in told
    (schedule,) = await pbot.rt.db.digests.all()
    assert schedule.last_status == "paused"
    assert "paused" in await digest(pbot, slack, "run 1", user="U2")  # stays paused
    assert len(dms_to(slack, "U2")) == 1


async def test_every_fire_checks_the_audience_and_pauses_when_it_no_longer_holds(
    make_bot: MakeBot, slack, llm
) -> None:
    private_leadership(slack)
    slack.add_channel("G4", "leaders-digest", members=("U1", "UADMIN"), is_private=True)
    slack.channels["G1"].members.add("UADMIN")
    llm.default.content = f"Summary: {SECRET}"
    harness = await make_bot(RUN_SCHEDULER="true", scheduler={"second": "*", "retry_delay": 0})
    try:
        slack.add_message("G1", "U2", "fresh news", ts=f"{time.time() - 5:.6f}")
        text = await digest(
            harness,
            slack,
            'add <#G4|leaders-digest> cron "* * * * *" UTC from <#G1|leadership>',
            user="UADMIN",
        )
        assert "Digest 1 set" in text  # an admin may schedule more often than hourly
        await slack.wait_for(lambda: digests_posted(slack, "G4"), timeout=30, what="a first digest")
        slack.add_user("U3", "carol")
        slack.channels["G4"].members.add("U3")  # someone who can't read #leadership joins the target
        harness.rt.memberships.forget()
        await slack.wait_for(lambda: dms_to(slack, "UADMIN"), timeout=30, what="the creator told")
        posted = len(digests_posted(slack, "G4"))
        await harness.idle()
        assert "paused" in dms_to(slack, "UADMIN")[0] and "can't read" in dms_to(slack, "UADMIN")[0]
        (schedule,) = await harness.rt.db.digests.all()
        assert schedule.last_status == "paused"
        assert harness.rt.digest_scheduler.next_run(1) is None  # no longer scheduled
        assert len(digests_posted(slack, "G4")) == posted
        assert SECRET not in json.dumps([m for m in slack.posted(channel="G4")][posted:])
    finally:
        await harness.close()


async def test_members_get_ten_schedules_per_channel_at_most_hourly(pbot: Bot, slack) -> None:
    text = await digest(pbot, slack, 'add <#C2|random> cron "*/30 * * * *" UTC', user="U1")
    assert "at least an hour apart" in text and "every 30 minutes" in text
    for hour in range(10):
        assert "set" in await digest(pbot, slack, f"add <#C2|random> daily {hour:02d}:00 UTC", user="U1")
    text = await digest(pbot, slack, "add <#C2|random> daily 11:00 UTC", user="U1")
    assert "already has 10 digests" in text
    slack.channels["C2"].members.add("UADMIN")
    pbot.rt.memberships.forget("C2")
    assert "set" in await digest(pbot, slack, "add <#C2|random> daily 11:00 UTC", user="UADMIN")
    assert "set" in await digest(pbot, slack, 'add <#C2|random> cron "*/30 * * * *" UTC', user="UADMIN")
