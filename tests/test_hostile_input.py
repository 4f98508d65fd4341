"""Issue 11, item 5: malformed, oversized and unsigned requests at the HTTP front door.

Each is sent signed (or deliberately not) over real HTTP to the running app; the answer must be
a 2xx ack (or 401/413 before Bolt), one short log line, no crashed task and nothing posted.
"""

from __future__ import annotations

import json
import logging

import pytest

from bot.slack.door.payloads import payload_problem
from tests.conftest import SIGNING_SECRET, Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import block_actions_body, command_body, event_body, mention, post_signed

EDGE = "bot.slack.door.front_door"


def edge_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == EDGE]


def crashed(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b'{"type": "event_callback", "event": {', "application/json", "does not parse"),
        (b"[1, 2, 3]", "application/json", "the body is a list"),
        (b"\xff\xfe{}", "application/json", "does not parse"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", "does not parse"),
        (
            event_body(mention("<@UBOT> hi", ts="1.1") | {"channel": 12345}),
            "application/json",
            "event.channel is a int",
        ),
        (
            event_body(mention("<@UBOT> hi", ts="1.2") | {"user": ["U1", "U2"]}),
            "application/json",
            "event.user is a list",
        ),
        (event_body(mention("<@UBOT> hi", ts="1.3") | {"ts": "not-a-ts"}), "application/json", "event.ts"),
        (json.dumps({"type": "event_callback", "event": "x"}).encode(), "application/json", "body.event"),
        (
            json.dumps({"command": "/weather", "text": ["Karachi"], "user_id": "U1"}).encode(),
            "application/json",
            "command.text",
        ),
    ],
)
async def test_malformed_signed_payloads_are_acked_and_ignored(
    bot: Bot, slack, llm, caplog, body: bytes, content_type: str, why: str
) -> None:
    caplog.set_level(logging.INFO)
    status, _ = await bot.post(body, content_type)
    await bot.idle()
    assert status == 200
    (line,) = edge_lines(caplog)
    assert why in line and "\n" not in line and len(line) < 200
    assert crashed(caplog) == []
    assert slack.posted() == [] and llm.requests == []


async def test_malformed_block_actions_are_ignored(bot: Bot, slack, caplog) -> None:
    caplog.set_level(logging.INFO)  # a signed malformed payload is an INFO line (issue 23, item 8)
    body = block_actions_body({"action_id": "answer_feedback", "value": {"nested": True}})
    status, _ = await bot.post(body, "application/x-www-form-urlencoded")
    await bot.idle()
    assert status == 200
    assert "payload.actions[0].value is a dict" in edge_lines(caplog)[0]
    assert crashed(caplog) == [] and slack.ephemerals == []


async def test_a_well_formed_payload_still_gets_through(bot: Bot, slack, llm) -> None:
    llm.script(Reply(content="fine"))
    status, _ = await bot.event(mention("<@UBOT> hi", ts="2.1"))
    await bot.idle()
    assert status == 200 and [p["thread_ts"] for p in slack.posted(channel="C1")] == ["2.1"]


async def test_unsigned_megabyte_bodies_get_short_counted_lines(bot: Bot, slack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    body = json.dumps({"type": "event_callback", "event": {"type": "app_mention", "text": "A" * 400_000}})
    for _ in range(5):
        async with bot.http.post(
            f"{bot.url}/slack/events", data=body.encode(), headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 401
    await bot.stop()  # the server's cleanup logs the count of the current interval
    # The database driver's own DEBUG lines (the work engine polls) carry no request text.
    ours = [r for r in caplog.records if not r.name.startswith(("aiosqlite", "sqlalchemy"))]
    logged = "\n".join(r.getMessage() for r in ours)
    assert "AAAA" not in logged and len(logged) < 2_000
    assert [line.split(" request")[0] for line in edge_lines(caplog)] == ["rejected 1", "rejected 4"]


async def test_oversized_bodies_are_refused_before_they_are_read(
    make_bot: MakeBot, slack, llm, caplog
) -> None:
    harness = await make_bot(SLACK_MAX_BODY_BYTES="20000")
    try:
        big = event_body(mention("<@UBOT> " + "x" * 30_000, ts="3.1"))
        status, _ = await harness.post(big, "application/json")
        assert status == 413

        async def chunks():  # no Content-Length: the limit holds while streaming too
            for _ in range(30):
                yield b"x" * 1_000

        async with harness.http.post(f"{harness.url}/slack/events", data=chunks()) as r:
            assert r.status == 413
        small = event_body(mention("<@UBOT> small", ts="3.2"))
        llm.script(Reply(content="ok"))
        assert (await harness.post(small, "application/json")).status == 200
        await harness.idle()
    finally:
        await harness.close()
    assert [p["thread_ts"] for p in slack.posted(channel="C1")] == ["3.2"]
    assert sum("body over 20000 bytes" in line for line in edge_lines(caplog)) == 2


async def test_form_commands_with_odd_characters_still_parse(bot: Bot, slack) -> None:
    status, text = await post_signed(
        bot.http,
        f"{bot.url}/slack/events",
        command_body("/weather", ""),
        SIGNING_SECRET,
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 200 and "Usage" in text


def test_payload_problem_reads_every_listener_field() -> None:
    ok = json.loads(event_body(mention("<@UBOT> hi", ts="1.1")))
    assert payload_problem(ok) is None
    assert payload_problem({**ok, "team_id": "T" * 40}) == "body.team_id is not a Slack id"
    nested = {**ok, "event": {"type": "message", "subtype": "message_changed", "message": {"user": 5}}}
    assert payload_problem(nested) == "event.message.user is a int, not a string"
    thread = {**ok, "event": {"type": "assistant_thread_started", "assistant_thread": {"channel_id": []}}}
    assert payload_problem(thread) == "event.assistant_thread.channel_id is a list, not a string"
    assert payload_problem({"type": "block_actions", "user": "U1"}) == "payload.user is a str, not an object"
    assert payload_problem("text") == "the body is a str, not an object"


def test_a_newline_in_a_logged_value_cannot_forge_a_line(capsys) -> None:
    from bot.logging_setup import configure_logging

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        configure_logging(make_settings_for_logging())
        logging.getLogger("bot.test").warning("tool %s failed", "get_weather\n2026-01-01 ERROR forged line")
        logging.getLogger("bot.test").error("boom", exc_info=ValueError("x"))
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("tool get_weather\\n2026-01-01 ERROR forged line failed")
    assert not any(line.startswith("2026-01-01 ERROR") for line in lines)
    assert "Traceback" not in lines[1] and any("ValueError: x" in line for line in lines[2:])


def make_settings_for_logging():
    from bot.settings import load_settings

    return load_settings({"SLACK_BOT_TOKEN": "xoxb-log-test", "SLACK_SIGNING_SECRET": "s" * 20})
