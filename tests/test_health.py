"""Issues 14 and 11: /healthz, /readyz and /metrics in HTTP and Socket Mode; a database outage is
named by the probes and apologised for in Slack."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import schema
from bot.runtime import create_runtime
from bot.slack.answering.conversation import DATABASE_DOWN
from bot.slack.door import deliveries
from bot.slack.server import start_socket_mode
from tests.conftest import Bot, make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import event_body, mention
from tests.test_digest import dbot  # noqa: F401  (fixture: the bot with a digest channel)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.text()


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m and m[1] == name and ",".join(sorted((m[2] or "").split(","))) == want:
            return float(m[3])
    return 0.0


def _replace_with_directory(path: Path) -> None:
    for p in list(path.parent.glob(path.name + "*")):  # listed first: renames disturb a scan
        p.rename(p.with_name("moved-" + p.name))
    path.mkdir()  # a directory where the file was: "unable to open database file"


async def take_database_down(db_url: str, rt, door=None) -> None:
    """An outage as the process sees it: new connections fail, pooled ones are gone (on SQLite
    also the front door's inbox beside the file, bot/db/queue/inbox.py)."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.split(":///", 1)[1])
        _replace_with_directory(path)
        inbox = path.with_name(path.name + "-inbox")
        for again in range(5):  # an open connection may have made it anew meanwhile
            try:
                inbox.mkdir()
                break
            except FileExistsError:
                inbox.rename(inbox.with_name(f"moved-{again}-" + inbox.name))
        await rt.work.close()
        if door is not None:
            await door.on_loop(door.store.close)
    else:
        import asyncpg

        name = make_url(db_url).database
        admin = await asyncpg.connect(os.environ["TEST_DATABASE_URL"])
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
        finally:
            await admin.close()
    await rt.db.engine.dispose()


async def test_probes_and_metrics_over_http(bot: Bot, slack, llm) -> None:
    status, body = await get(f"{bot.url}/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    status, body = await get(f"{bot.url}/readyz")
    assert status == 200 and json.loads(body)["ok"] is True
    _, before = await get(f"{bot.url}/metrics")

    llm.script(Reply(content="metered"))
    await bot.event(mention("<@UBOT> hi", ts="1.1"), event_id="EvM1")
    await bot.event(mention("<@UBOT> hi", ts="1.1"), event_id="EvM1", retry_num=1)  # a replay
    await bot.idle()
    slack.fail_next("reactions.add", error="channel_not_found")
    client = bot.rt.slack
    try:
        await client.reactions_add(channel="C404", timestamp="1.1", name="eyes")
    except Exception:
        pass
    status, after = await get(f"{bot.url}/metrics")
    assert status == 200

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("switchboard_runs_total", trigger="mention", status="ok") == 1
    assert delta("switchboard_events_deduplicated_total") == 1
    assert delta("switchboard_model_call_seconds_count", model=bot.settings.openai_model) == 1
    assert delta("switchboard_tokens_total", kind="prompt") > 0
    assert delta("switchboard_slack_api_errors_total", method="reactions.add", error="channel_not_found") == 1


async def test_a_schema_behind_makes_readyz_fail_but_not_healthz(bot: Bot) -> None:
    async with bot.rt.db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": schema.BASE_REVISION})
    status, body = await get(f"{bot.url}/readyz")
    assert status == 503
    found = json.loads(body)
    assert found["failing"] == ["schema"] and "switchboard migrate" in found["schema"]
    status, _ = await get(f"{bot.url}/healthz")
    assert status == 200


async def test_database_down_is_named_by_healthz_and_the_user_gets_an_apology(
    bot: Bot, slack, db_url, monkeypatch
) -> None:
    monkeypatch.setattr(deliveries, "RECORD_PATIENCE", 1.0)  # not a minute of waiting for it
    await take_database_down(db_url, bot.rt, bot.running.door)
    try:
        status, body = await get(f"{bot.url}/healthz")
        assert status == 503
        found = json.loads(body)
        assert found["ok"] is False and found["failing"] == ["database"] and found["database"]
        status, body = await get(f"{bot.url}/readyz")
        assert status == 503 and json.loads(body)["failing"] == ["database"]

        code, _ = await bot.event(mention("<@UBOT> are you there?", ts="7.1"))
        assert code == 200  # acked: Slack must not retry into the outage
        await bot.idle()
        (apology,) = slack.posted(channel="C1")
        assert apology["text"] == DATABASE_DOWN and apology["thread_ts"] == "7.1"
    finally:
        if db_url.startswith("sqlite"):  # let the fixture's teardown find its database again
            path = Path(db_url.split(":///", 1)[1])
            shutil.rmtree(path)


async def test_probes_and_metrics_in_socket_mode(slack, llm, db_url) -> None:
    from tests.bot_process import free_port

    # Not make_bot: a Socket Mode process (start_socket_mode), not the HTTP app the factory serves.
    settings = make_settings(slack, llm, db_url, SLACK_APP_TOKEN="xapp-1-test", SLACK_SIGNING_SECRET="")
    running = await start_socket_mode(await create_runtime(settings), health_port=free_port())
    try:
        base = f"http://127.0.0.1:{running.health_port}"
        llm.script(Reply(content="over the socket"))
        body = json.loads(event_body(mention("<@UBOT> hi", ts="2.1"), event_id="EvSH1"))
        await slack.socket_send(body)
        await slack.wait_for(lambda: "over the socket" in str(slack.posted(channel="C1")))
        await slack.wait_for(lambda: not len(running.rt.tasks), what="the answer to finish")
        for path in ("/healthz", "/readyz"):
            status, text_ = await get(base + path)
            assert status == 200 and json.loads(text_)["ok"] is True, (path, text_)
        status, metrics_text = await get(base + "/metrics")
        assert (
            status == 200
            and sample(metrics_text, "switchboard_runs_total", trigger="mention", status="ok") >= 1
        )
        await take_database_down(db_url, running.rt)
        status, text_ = await get(base + "/healthz")
        assert status == 503 and json.loads(text_)["failing"] == ["database"]
    finally:
        await running.stop(drain=5)
        if db_url.startswith("sqlite"):
            shutil.rmtree(Path(db_url.split(":///", 1)[1]), ignore_errors=True)


async def test_digests_posted_are_counted(dbot: Bot, slack, llm) -> None:  # noqa: F811
    import time

    from tests.test_digest import digest, digests_posted

    _, before = await get(f"{dbot.url}/metrics")
    slack.seed_messages("C2", 3, start_ts=time.time() - 600, step=60, text="ticket {i}")
    await digest(dbot, slack, "add <#C3|support-digest> daily 09:00 UTC from <#C2|random>")
    llm.script(Reply(content="Three tickets."))
    assert "posted" in await digest(dbot, slack, "run 1")
    assert len(digests_posted(slack, "C3")) == 1
    _, after = await get(f"{dbot.url}/metrics")
    posted = "switchboard_digests_posted_total"
    assert sample(after, posted) - sample(before, posted) == 1
    assert sample(after, "switchboard_runs_total", trigger="digest", status="ok") >= 1
