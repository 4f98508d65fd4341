"""What a Slack payload must look like before any listener sees it: pure checks, no I/O.

Slack signs what it sends, but a signed body can still be malformed (a proxy bug, a replayed
capture, a hostile workspace app with our secret). Every field a listener reads is checked here
for type and size, so a listener can index into the payload without guarding each access.
"""

from __future__ import annotations

import re
from typing import Any

ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # channel, user, team, bot ids (the columns are 32 long)
TS = re.compile(r"^\d{1,12}(\.\d{1,9})?$")  # message timestamps, "1700000000.000100"
MAX_TEXT = 200_000  # a message's text; Slack itself stops at 40,000 characters
MAX_SHORT = 4_000  # every other string we read (command text, urls, action values)

# Fields checked when present: name -> kind. "id" and "ts" are patterns, "str" a bounded string,
# "text" a long string, "dict" and "list" containers, "bool" a flag.
MESSAGE_FIELDS = {  # what the message, app_mention and assistant listeners read
    "type": "str",
    "subtype": "str",
    "user": "id",
    "channel": "id",
    "channel_type": "str",
    "team": "id",
    "bot_id": "id",
    "text": "text",
    "ts": "ts",
    "thread_ts": "ts",
    "files": "list",
    "blocks": "list",
    "message": "dict",
    "previous_message": "dict",
    "assistant_thread": "dict",
    "bot_profile": "dict",
}
NESTED_MESSAGE_FIELDS = {
    k: MESSAGE_FIELDS[k]
    for k in ("type", "subtype", "user", "bot_id", "text", "ts", "thread_ts", "blocks", "files")
}
# Each event type a listener handles, with the fields that listener reads. Other types (im_created,
# member_joined_channel, ...) are acknowledged unread, so their fields are never judged.
EVENT_FIELDS: dict[str, dict[str, str]] = {
    "message": MESSAGE_FIELDS,
    "app_mention": MESSAGE_FIELDS,
    "app_home_opened": {"user": "id", "tab": "str"},
    "assistant_thread_started": {"assistant_thread": "dict"},
    "assistant_thread_context_changed": {"assistant_thread": "dict"},
}
ASSISTANT_THREAD_FIELDS = {"user_id": "id", "channel_id": "id", "thread_ts": "ts", "context": "dict"}
COMMAND_FIELDS = {
    "command": "str",
    "text": "str",
    "user_id": "id",
    "channel_id": "id",
    "team_id": "id",
    "response_url": "str",
    "trigger_id": "str",
    "channel_name": "str",
    "user_name": "str",
}
INTERACTIVE_FIELDS = {
    "type": "str",
    "user": "dict",
    "team": "dict",
    "channel": "dict",
    "container": "dict",
    "message": "dict",
    "actions": "list",
    "response_url": "str",
    "trigger_id": "str",
}
ACTION_FIELDS = {"action_id": "str", "block_id": "str", "value": "str", "type": "str", "action_ts": "str"}
CONTAINER_FIELDS = {"channel_id": "id", "message_ts": "ts", "thread_ts": "ts", "type": "str"}
ENVELOPE_FIELDS = {
    "type": "str",
    "team_id": "id",
    "api_app_id": "id",
    "event_id": "str",
    "event": "dict",
    "authorizations": "list",
    "challenge": "str",
}


def _kind_problem(value: Any, kind: str) -> str | None:
    if kind == "dict":
        return None if isinstance(value, dict) else f"is a {type(value).__name__}, not an object"
    if kind == "list":
        return None if isinstance(value, list) else f"is a {type(value).__name__}, not a list"
    if kind == "bool":
        return None if isinstance(value, bool) else f"is a {type(value).__name__}, not true/false"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if kind == "id" and not ID.match(value):
        return "is not a Slack id"
    if kind == "ts" and not TS.match(value):
        return "is not a message timestamp"
    if len(value) > (MAX_TEXT if kind == "text" else MAX_SHORT):
        return f"is too long ({len(value)} characters)"
    return None


def _fields(obj: dict[str, Any], rules: dict[str, str], where: str) -> str | None:
    for name, kind in rules.items():
        value = obj.get(name)
        if value is not None and (problem := _kind_problem(value, kind)):
            return f"{where}.{name} {problem}"
    return None


def _id_of(obj: Any, where: str) -> str | None:
    """`user`, `team`, `channel` objects in interactivity payloads: {"id": "U1", ...}."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        return f"{where} is a {type(obj).__name__}, not an object"
    value = obj.get("id")
    if value is not None and (problem := _kind_problem(value, "id")):
        return f"{where}.id {problem}"
    return None


def _event_problem(event: dict[str, Any]) -> str | None:
    """Only the fields the event's listener reads (EVENT_FIELDS), so a field the bot never uses,
    such as the docs' `event_ts` without a dot, cannot get a delivery dropped."""
    if not isinstance(event.get("type"), str):
        return "event.type is missing"
    rules = EVENT_FIELDS.get(event["type"])
    if rules is None:
        return None
    if problem := _fields(event, rules, "event"):
        return problem
    for key in ("message", "previous_message"):
        if key in rules and isinstance(event.get(key), dict):
            if problem := _fields(event[key], NESTED_MESSAGE_FIELDS, f"event.{key}"):
                return problem
    if "assistant_thread" in rules and isinstance(event.get("assistant_thread"), dict):
        return _fields(event["assistant_thread"], ASSISTANT_THREAD_FIELDS, "event.assistant_thread")
    for i, item in enumerate(event.get("files") or [] if "files" in rules else []):
        if not isinstance(item, dict):
            return f"event.files[{i}] is not an object"
    return None


def _interactive_problem(body: dict[str, Any]) -> str | None:
    if problem := _fields(body, INTERACTIVE_FIELDS, "payload"):
        return problem
    for key in ("user", "team", "channel"):
        if problem := _id_of(body.get(key), f"payload.{key}"):
            return problem
    if isinstance(body.get("container"), dict) and (
        problem := _fields(body["container"], CONTAINER_FIELDS, "payload.container")
    ):
        return problem
    if isinstance(body.get("message"), dict) and (
        problem := _fields(body["message"], NESTED_MESSAGE_FIELDS, "payload.message")
    ):
        return problem
    for i, action in enumerate(body.get("actions") or []):
        if not isinstance(action, dict):
            return f"payload.actions[{i}] is not an object"
        if problem := _fields(action, ACTION_FIELDS, f"payload.actions[{i}]"):
            return problem
    return None


def payload_problem(body: Any) -> str | None:
    """None for a payload our listeners can read safely; else a short reason (for one log line)."""
    if not isinstance(body, dict):
        return f"the body is a {type(body).__name__}, not an object"
    if "command" in body:
        return _fields(body, COMMAND_FIELDS, "command")
    if "event" in body or body.get("type") in ("event_callback", "url_verification"):
        if problem := _fields(body, ENVELOPE_FIELDS, "body"):
            return problem
        for i, item in enumerate(body.get("authorizations") or []):
            if not isinstance(item, dict):
                return f"body.authorizations[{i}] is not an object"
        event = body.get("event")
        return _event_problem(event) if event is not None else None
    if "actions" in body or "user" in body or "view" in body:
        return _interactive_problem(body)
    return _fields(body, ENVELOPE_FIELDS, "body")
