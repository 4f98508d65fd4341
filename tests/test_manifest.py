"""manifest.yml against Slack's published schema, and least privilege: exactly the scopes used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_rules import manifest_scopes, needed_scopes, shape_errors

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "tests" / "fixtures" / "slack" / "manifest.schema.1.0.0.json"
# `client.chat_postMessage(...)` or `call(rt.slack.chat_update, ...)`: an attribute, so Block Kit
# element types such as "conversations_select" are not mistaken for methods.
CLIENT_CALL = re.compile(
    r"\.((?:chat|conversations|users|assistant_threads|views|files|reactions|auth)_[a-zA-Z]+(?:_v2)?)\b"
)
# Scopes that no Web API method of ours needs but Slack requires: events, commands, file downloads.
NON_METHOD_SCOPES = {"app_mentions:read", "commands", "files:read"}


def manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_validates_against_slacks_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(manifest())]
    assert errors == []


def test_the_schema_catches_a_broken_manifest() -> None:
    broken = manifest()
    broken["features"]["shortcuts"][0]["type"] = "sideways"
    broken["oauth_config"]["scopes"]["bot"].append(42)
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def methods_the_code_calls() -> set[str]:
    found: set[str] = set()
    for folder in ("bot", "orchestrators", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in CLIENT_CALL.findall(path.read_text()):
                prefix, _, rest = name.partition("_")
                if prefix == "assistant":
                    prefix, _, rest = rest.partition("_")
                    prefix = "assistant." + prefix
                found.add(f"{prefix}.{rest}")
    if "files.upload_v2" in found:  # slack_sdk's helper: the two methods of Slack's v2 upload
        found ^= {"files.upload_v2", "files.getUploadURLExternal", "files.completeUploadExternal"}
    return found


def test_scopes_are_exactly_the_ones_the_code_uses() -> None:
    kinds = ["channels", "groups", "im", "mpim"]
    needed = {s for m in methods_the_code_calls() for s in needed_scopes(m, kinds)} | NON_METHOD_SCOPES
    assert "conversations.open" in methods_the_code_calls()  # the digest-failure DM
    assert set(manifest_scopes()) == needed
    assert {"im:write", "files:read"} <= manifest_scopes()
    assert "files.info" in methods_the_code_calls()  # Slack Connect files are looked up (files:read)
    assert not {"channels:join", "reactions:write"} & manifest_scopes()


def test_subscribed_events_and_shortcut() -> None:
    data = manifest()
    events = set(data["settings"]["event_subscriptions"]["bot_events"])
    assert "app_home_opened" in events and data["features"]["app_home"]["home_tab_enabled"] is True
    (shortcut,) = data["features"]["shortcuts"]
    assert shortcut["callback_id"] == "summarize_thread" and shortcut["type"] == "message"
    assert len(data["features"]["assistant_view"]["suggested_prompts"]) <= 4


async def test_the_fake_refuses_a_scope_the_manifest_lacks() -> None:
    async with FakeSlack(scopes=manifest_scopes() - {"im:write"}) as fake:
        fake.add_user("U1", "alice")
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        try:
            await client.conversations_open(users="U1")
            raise AssertionError("conversations.open worked without im:write")
        except SlackApiError as exc:
            assert exc.response["error"] == "missing_scope" and exc.response["needed"] == "im:write"
        fake.add_channel("G1", "secret", members=("U1",), is_private=True)
        fake.scopes = manifest_scopes() - {"groups:history"}
        try:
            await client.conversations_history(channel="G1")
            raise AssertionError("a private channel's history was read without groups:history")
        except SlackApiError as exc:
            assert exc.response["needed"] == "groups:history"
        fake.add_channel("C9", "open", members=("U1",))
        assert (await client.conversations_history(channel="C9"))["ok"]  # channels:history is still there


def test_answers_are_checked_against_slacks_captures() -> None:
    """The fake may only answer with fields Slack's own capture of the method has."""
    assert (
        shape_errors("chat.update", {"ok": True, "channel": "C1", "ts": "1.2", "message": {"text": "x"}})
        == []
    )
    assert shape_errors("chat.update", {"ok": True, "message": {"ts": "1.2", "invented": 1}}) == [
        "chat.update: /message/invented",
        "chat.update: /message/ts",  # Slack's chat.update answer has no message.ts
    ]
    assert shape_errors("chat.stopStream", {"ok": True, "message": {}}) == ["chat.stopStream: /message"]
    im = {"ok": True, "channel": {"id": "D1", "is_im": True, "user": "U1"}}
    assert shape_errors("conversations.info", im) == []  # `user` as in conversations.open's capture
