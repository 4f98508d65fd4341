"""Issue 23, item 8: every payload type the bot handles, systematically broken, signed.

Each payload (a block_actions click for every action_id the bot registers, view_submission and
view_closed for every callback_id, global and message shortcuts, slash commands, events) is sent
with each of its fields broken: removed, null, a list, empty, a number, a string, nested deep or
huge (a deterministic rotation, see `variants`). Slack must never see a 5xx, no listener may
crash, no log line may carry a huge value, and a plain mention is still answered afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.slack.door.payloads import payload_problem
from tests.conftest import Bot, MakeBot
from tests.fakes.openai_server import Reply
from tests.fakes.slack_requests import (
    block_actions_body,
    command_body,
    dm,
    event_body,
    mention,
    view_submission_body,
)

MARK = "FUZZTEXT"  # the broken values are made of it; no log line may carry a huge one
FORM = "application/x-www-form-urlencoded"
CLOSED_PORT = "http://127.0.0.1:9"


def nested(depth: int) -> Any:
    value: Any = MARK
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def mutations(original: Any) -> Iterator[tuple[str, Any]]:
    """(name, replacement) pairs; `REMOVE` drops the field."""
    yield "removed", REMOVE
    yield "null", None
    yield "list", [MARK]
    yield "empty", [] if isinstance(original, list) else {} if isinstance(original, dict) else ""
    yield "number", 12345
    yield "string", MARK
    yield "nested", nested(300)
    yield "huge", MARK * 12_000


REMOVE = object()
MUTATIONS = len(list(mutations(None)))


def paths(value: Any, prefix: tuple[Any, ...] = (), depth: int = 4) -> Iterator[tuple[Any, ...]]:
    """Every field of a payload down to `depth` (a list's first item stands for the rest)."""
    if depth == 0:
        return
    items = (
        value.items() if isinstance(value, dict) else enumerate(value[:1] if isinstance(value, list) else [])
    )
    for key, child in items:
        if key == "blocks":  # Slack's own rich text; our listeners never read inside it
            continue
        yield (*prefix, key)
        yield from paths(child, (*prefix, key), depth - 1)


def mutated(payload: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    copy = json.loads(json.dumps(payload))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if replacement is REMOVE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


def variants(payload: dict[str, Any], rotation: int) -> Iterator[tuple[str, Any]]:
    """Each field broken two ways (top level) or one way (deeper), rotated along the fields and
    from one payload to the next, so every mutation meets every kind of field."""
    for i, path in enumerate(paths(payload)):
        pairs = list(mutations(_get(payload, path)))
        chosen = {(i + rotation) % MUTATIONS, (i + rotation + 4) % MUTATIONS}
        for k in sorted(chosen) if len(path) == 1 else [(i + rotation) % MUTATIONS]:
            name, replacement = pairs[k]
            yield f"{'.'.join(map(str, path))} {name}", mutated(payload, path, replacement)


def _get(payload: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        payload = payload[key]
    return payload


def payload_of(body: bytes) -> dict[str, Any]:
    return json.loads(parse_qs(body.decode())["payload"][0])


def form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


class Registered:
    """What the bot registers with Bolt, recorded while the app is built."""

    KINDS = ("action", "view", "shortcut", "command", "event")

    def __init__(self) -> None:
        self.ids: dict[str, list[str]] = {kind: [] for kind in self.KINDS}

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for kind in self.KINDS:
            original = getattr(AsyncApp, kind)

            def recording(app: AsyncApp, constraints: Any, *a: Any, _kind=kind, _orig=original, **kw: Any):
                assert isinstance(constraints, str), f"fuzz payloads need string ids, got {constraints!r}"
                if constraints not in self.ids[_kind]:
                    self.ids[_kind].append(constraints)
                return _orig(app, constraints, *a, **kw)

            monkeypatch.setattr(AsyncApp, kind, recording)


@pytest.fixture
async def fuzzed(make_bot: MakeBot, monkeypatch) -> tuple[Bot, Registered]:
    registered = Registered()
    registered.patch(monkeypatch)
    # Workflows that pass every check call their APIs: a closed local port refuses them at once.
    harness = await make_bot(
        OPEN_METEO_URL=CLOSED_PORT, OPEN_METEO_GEOCODING_URL=CLOSED_PORT, SEARXNG_URL=CLOSED_PORT
    )
    return harness, registered


def interactive_bases(registered: Registered, response_url: str) -> list[dict[str, Any]]:
    bases = []
    for action_id in registered.ids["action"]:
        action = {
            "type": "button",
            "action_id": action_id,
            "value": "1",
            "selected_conversation": "C1",
            "text": {"type": "plain_text", "text": "x"},
        }
        payload = payload_of(block_actions_body(action, user="UADMIN", response_url=response_url))
        payload["view"] = {"id": "V1", "type": "home", "private_metadata": "", "state": {"values": {}}}
        bases.append(payload)
    for callback_id in registered.ids["view"]:
        values = {"model": {"model": {"type": "plain_text_input", "value": "gpt-fuzz"}}}
        metadata = json.dumps({"team": "T1", "scope": "C1"})
        submission = payload_of(
            view_submission_body(callback_id, values, private_metadata=metadata, user="UADMIN")
        )
        bases += [submission, submission | {"type": "view_closed", "is_cleared": False}]
    for callback_id in registered.ids["shortcut"]:
        shortcut = {
            "type": "shortcut",
            "callback_id": callback_id,
            "trigger_id": "trig.1",
            "user": {"id": "U1", "username": "u1", "team_id": "T1"},
            "team": {"id": "T1", "domain": "fake"},
            "action_ts": "1.1",
            "response_url": response_url,
        }
        message = {"type": "message", "user": "U1", "ts": "5.1", "text": "hello"}
        bases += [
            shortcut,
            shortcut
            | {"type": "message_action", "channel": {"id": "C1"}, "message_ts": "5.1", "message": message},
        ]
    return bases


def event_bases() -> list[dict[str, Any]]:
    home = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home", "event_ts": "1.1"}
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "channel_id": "D1", "thread_ts": "8.1", "context": {}},
        "event_ts": "8.2",
    }
    events = [mention("<@UBOT> hi", ts="7.1"), dm("hello", ts="7.2"), home, started]
    return [json.loads(event_body(event)) for event in events]


def command_bases(registered: Registered, response_url: str) -> list[dict[str, Any]]:
    return [
        {k: v[0] for k, v in parse_qs(command_body(name, "", response_url=response_url).decode()).items()}
        | {"text": ""}
        for name in registered.ids["command"]
    ]


async def send_all(bot: Bot, requests: list[tuple[str, bytes, str]]) -> list[str]:
    """Each request in turn; the ones answered with a 5xx, by name."""
    failures = []
    for name, body, content_type in requests:
        status, _ = await bot.post(body, content_type)
        if status >= 500:
            failures.append(f"{name}: {status}")
    return failures


async def test_registered_listeners_are_known(fuzzed) -> None:
    _, registered = fuzzed
    assert {"settings_pick_channel", "answer_feedback"} <= set(registered.ids["action"])
    assert registered.ids["view"] and registered.ids["shortcut"] and "/ask" in registered.ids["command"]
    assert "app_mention" in registered.ids["event"]


async def test_broken_interactive_payloads_never_get_a_5xx(fuzzed, slack, llm, caplog) -> None:
    bot, registered = fuzzed
    caplog.set_level(logging.INFO)
    llm.default = Reply(content="fuzzed answer")
    requests = [
        (f"{base['type']} {name}", form(payload), FORM)
        for rotation, base in enumerate(interactive_bases(registered, slack.response_url("fuzz")))
        for name, payload in variants(base, rotation)
    ]
    for raw in (b"payload=", b"payload=null", b"payload=%5B%5D", b"payload=%7B%7D", b"payload=not+json"):
        requests.append((raw.decode(), raw, FORM))
    assert len(requests) > 300
    assert await send_all(bot, requests) == []
    await bot.idle(60)
    await assert_healthy(bot, slack, llm, caplog)


async def test_broken_events_and_commands_never_get_a_5xx(fuzzed, slack, llm, caplog) -> None:
    bot, registered = fuzzed
    caplog.set_level(logging.INFO)
    llm.default = Reply(content="fuzzed answer")
    requests = [
        (f"event {base['event']['type']} {name}", json.dumps(payload).encode(), "application/json")
        for rotation, base in enumerate(event_bases())
        for name, payload in variants(base, rotation)
    ]
    for rotation, base in enumerate(command_bases(registered, slack.response_url("fuzz"))):
        for name, payload in variants(base, rotation):  # as JSON: any type; as a form: strings only
            requests.append((f"{base['command']} {name}", json.dumps(payload).encode(), "application/json"))
            if isinstance(payload.get(name.split()[0]), str) or name.endswith(" removed"):
                requests.append((f"{base['command']} form {name}", urlencode(payload).encode(), FORM))
    assert len(requests) > 300
    assert await send_all(bot, requests) == []
    await bot.idle(60)
    await assert_healthy(bot, slack, llm, caplog)


async def assert_healthy(bot: Bot, slack, llm, caplog) -> None:
    """No listener crashed, no broken field's text was logged, and a mention is still answered."""
    crashed = [  # Slack refusing an id it does not know is an answer, not a crash
        f"{r.getMessage()[:100]}: {r.exc_info[1]!r}"[:300]
        for r in caplog.records
        if r.levelno >= logging.ERROR and not (r.exc_info and isinstance(r.exc_info[1], SlackApiError))
    ]
    assert crashed == []
    loud = [r.getMessage()[:100] for r in caplog.records if MARK * 2 in r.getMessage()]
    assert loud == [] and max(len(r.getMessage()) for r in caplog.records) < 1_000
    llm.script(Reply(content="still here"))
    status, _ = await bot.event(mention("<@UBOT> are you there?", ts="999.1"))
    await bot.idle()
    answers = [p["text"] for p in slack.posted(channel="C1") if p.get("thread_ts") == "999.1"]
    assert status == 200 and answers == ["still here"]


def settings_submission(**changes: Any) -> dict[str, Any]:
    values = {"model": {"model": {"type": "plain_text_input", "value": "gpt-junk"}}}
    metadata = json.dumps({"team": "T1", "scope": "C1"})
    payload = payload_of(
        view_submission_body("channel_settings", values, private_metadata=metadata, user="UADMIN")
    )
    for key, value in changes.items():
        where, _, field = key.rpartition("__")
        target = payload["view"] if where == "view" else payload
        if value is REMOVE:
            del target[field]
        else:
            target[field] = value
    return payload


def click(**changes: Any) -> dict[str, Any]:
    action = {"type": "button", "action_id": "answer_feedback", "value": "good:1"}
    return payload_of(block_actions_body(action)) | changes


REPORTED = {  # issue 23: each of these got HTTP 500
    "metadata a list": settings_submission(view__private_metadata=["T1", "C1"]),
    "metadata null": settings_submission(view__private_metadata=None),
    "metadata a number": settings_submission(view__private_metadata=7),
    "metadata not JSON": settings_submission(view__private_metadata="{team: T1"),
    "metadata a JSON list": settings_submission(view__private_metadata='["T1", "C1"]'),
    "state a list": settings_submission(view__state=[]),
    "values a list": settings_submission(view__state={"values": ["model"]}),
    "values a string": settings_submission(view__state={"values": {"model": {"model": "gpt"}}}),
    "no user": settings_submission(user=REMOVE),
    "view a string": settings_submission(view="channel_settings"),
    "empty actions": click(actions=[]),
    "actions null": click(actions=None),
    "action without action_id": click(actions=[{"type": "button", "value": "good:1"}]),
}


@pytest.mark.parametrize("name", list(REPORTED))
async def test_the_reported_payloads_are_acked_and_change_nothing(fuzzed, slack, caplog, name: str) -> None:
    bot, _ = fuzzed
    caplog.set_level(logging.INFO)
    status, text = await bot.post(form(REPORTED[name]), FORM)
    await bot.idle()
    assert status == 200 and (text == "" or json.loads(text)["response_action"] == "errors")
    assert await bot.rt.db.channel_settings.changes("T1") == [] and slack.ephemerals == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_payload_problems_name_the_field_never_its_value() -> None:
    state = {"values": {MARK: {MARK: MARK}}}
    cases = {
        "the body nests deeper than 100 levels": click(state={"values": nested(150)}),
        "payload.response_url is not a URL": click(response_url=f"javascript:{MARK}"),
        "payload.state.values has an element that is not an object": click(state=state),
        "payload.enterprise is a int, not a string": click(enterprise=5),
        "payload.response_urls is null": settings_submission(response_urls=None),
        "command.text is null": {"command": "/ask", "text": None, "user_id": "U1", "channel_id": "C1"},
        "body.event is missing": {"type": "event_callback", "event": None, "is_ext_shared_channel": True},
        "body.event.message.message.message.message nests too deep": json.loads(
            event_body(mention("hi", ts="1.1") | {"message": nested_messages(6)})
        ),
    }
    for reason, body in cases.items():
        assert payload_problem(body) == reason
    assert payload_problem(click()) is None and payload_problem(settings_submission()) is None


def nested_messages(depth: int) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "user": 5}
    for _ in range(depth):
        message = {"type": "message", "message": message}
    return message
