"""The front door on its own thread: acks that do not wait for the main loop, and the SQLite
inbox the door records in (bot/slack/door/front_door.py `DoorThread`, bot/db/queue/inbox.py)."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from bot.db.database import Database
from bot.db.queue.inbox import Inbox, inbox_url
from bot.db.queue.jobs import NewJob
from tests.conftest import SIGNING_SECRET, Bot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import event_body, mention, sign

WAIT = 30.0  # far beyond an ack's few milliseconds: the test never races the clock


def post_from_thread(url: str, body: bytes, outcome: dict[str, int], done: threading.Event) -> None:
    request = urllib.request.Request(
        url, data=body, headers=sign(SIGNING_SECRET, body) | {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        outcome["status"] = response.status
    done.set()


async def test_an_event_is_acked_while_the_main_loop_is_blocked(bot: Bot, slack, llm) -> None:
    """The main loop (listeners, answers, this test's own loop) is stopped dead until the ack
    arrives: an ack that needed a turn on it could never come."""
    llm.script(Reply(content="answered after the block"))
    outcome: dict[str, int] = {}
    done = threading.Event()
    body = event_body(mention("<@UBOT> are you there?", ts="5.1"), event_id="EvDoor1")
    sender = threading.Thread(target=post_from_thread, args=(f"{bot.url}/slack/events", body, outcome, done))
    sender.start()
    acked_while_blocked = done.wait(WAIT)  # blocks this loop, which is the bot's main loop
    sender.join(WAIT)
    assert acked_while_blocked and outcome["status"] == 200
    await slack.wait_for(lambda: "answered after the block" in str(slack.posted(channel="C1")), timeout=WAIT)
    await bot.idle(timeout=WAIT)
    assert len([m for m in slack.posted(channel="C1") if "answered after the block" in m["text"]]) == 1


async def test_a_redelivery_after_the_answer_is_not_answered_again(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="once only"))
    event = mention("<@UBOT> once?", ts="6.1")
    code, _ = await bot.event(event, event_id="EvDoor2")
    assert code == 200
    await bot.idle(timeout=WAIT)
    code, _ = await bot.event(event, event_id="EvDoor2", retry_num=1)  # moved out of the inbox by now
    assert code == 200
    await bot.idle(timeout=WAIT)
    assert [m["text"] for m in slack.posted(channel="C1")].count("once only") == 1
    assert len(llm.requests) == 1


async def test_other_requests_pass_through_the_door_unchanged(bot: Bot) -> None:
    """Probes and metrics are served by the main loop's server, behind the door."""
    async with bot.http.get(f"{bot.url}/healthz") as response:
        assert response.status == 200 and (await response.json())["ok"] is True
    async with bot.http.get(f"{bot.url}/metrics") as response:
        assert response.status == 200 and "switchboard_" in await response.text()
    async with bot.http.get(f"{bot.url}/no-such-page") as response:
        assert response.status == 404


async def test_a_job_moved_twice_from_the_inbox_is_kept_once(tmp_path) -> None:
    """Two processes (or one after a restart) may move the same inbox row: its key keeps one
    job. A row is deleted only up to what was moved."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/bot.db")
    await db.prepare(True)
    url = inbox_url(db.url)
    assert url is not None
    inbox = Inbox(url)
    try:
        job = NewJob("event", "event:EvTwice", {"n": 1}, "q", "T1:U1")
        assert await inbox.add([job]) == [(1, True)]
        assert await inbox.add([job]) == [(1, False)]  # a retry while it waits
        ((row, arrival),) = await inbox.arrivals(0)
        for _ in range(2):  # claims of a kind nobody runs here: only the move happens
            assert await db.jobs.claim("owner", 30, 10, 0, ["digest"], arrivals=[arrival]) == []
        assert await db.jobs.states([1, 2]) == {1: "pending"}
        assert await inbox.arrivals(row) == []
        await inbox.forget(row)
        assert await inbox.arrivals(0) == []
        later = NewJob("event", "event:EvLater", {"n": 2}, "q", "T1:U1")
        ((later_id, new),) = await inbox.add([later])
        assert new and later_id > row  # never a moved row's id again: marks hold
    finally:
        await inbox.close()
        await db.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////data/bot.db", "sqlite+aiosqlite:////data/bot.db-inbox"),
        ("sqlite+aiosqlite:///:memory:", None),
        ("postgresql+asyncpg://u@h/db", None),
    ],
)
def test_inbox_beside_a_sqlite_file_only(url: str, expected: str | None) -> None:
    assert inbox_url(url) == expected
