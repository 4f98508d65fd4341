"""What a Slack payload must look like before any listener sees it: pure checks, no I/O.

Slack signs what it sends, but a signed body can still be malformed (a proxy bug, a replayed
capture, a hostile workspace app with our secret). Every field a listener reads is checked here
for type and size, so a listener can index into the payload without guarding each access; so is
every field Bolt reads before a listener runs (its context, its matchers), each interactive type
must carry what Slack always sends with it, and nesting is bounded.
"""

from __future__ import annotations

import re
from typing import Any

ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # channel, user, team, bot ids (the columns are 32 long)
URL = re.compile(r"^https?://[^\s/]+/\S*$")  # response_url: where a listener's respond() posts
TS = re.compile(r"^\d{1,12}(\.\d{1,9})?$")  # message timestamps, "1700000000.000100"
MAX_TEXT = 200_000  # a message's text; Slack itself stops at 40,000 characters
MAX_SHORT = 4_000  # every other string we read (command text, urls, action values)
MAX_DEPTH = 100  # Slack's deepest payloads (rich text in a view) nest about 15 levels

# Fields checked when present: name -> kind. "id", "ts" and "url" are patterns, "str" a bounded
# string, "text" a long string, "dict" and "list" containers, "objects" a list of objects, "bool"
# a flag, "ref" a string or an object whose "id" is one (user, team, channel in Bolt's eyes).
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
    "response_url": "url",
    "trigger_id": "str",
    "channel_name": "str",
    "user_name": "str",
}
INTERACTIVE_TYPES = (
    "block_actions",
    "block_suggestion",
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
    "interactive_message",
    "dialog_submission",
    "dialog_cancellation",
    "dialog_suggestion",
    "workflow_step_edit",
)
INTERACTIVE_FIELDS = {
    "type": "str",
    "container": "dict",
    "message": "dict",
    "actions": "list",
    "view": "dict",
    "state": "dict",
    "callback_id": "str",
    "action_id": "str",
    "value": "str",
    "message_ts": "ts",
    "action_ts": "str",
    "response_url": "url",
    "trigger_id": "str",
}
# What Slack needs to route each type, and what Bolt indexes without looking (its matchers).
REQUIRED = {
    "block_actions": ("actions",),
    "block_suggestion": ("action_id",),
    "view_submission": ("view",),
    "view_closed": ("view",),
    "shortcut": ("callback_id",),
    "message_action": ("callback_id",),
    "interactive_message": ("actions", "callback_id"),
    "dialog_submission": ("callback_id",),
    "dialog_cancellation": ("callback_id",),
    "dialog_suggestion": ("callback_id",),
    "workflow_step_edit": ("callback_id",),
}
# Block actions and a view's input values share these; selected ids are what a listener acts on.
ACTION_FIELDS = {
    "action_id": "str",
    "block_id": "str",
    "value": "str",
    "type": "str",
    "action_ts": "str",
    "selected_conversation": "id",
    "selected_channel": "id",
    "selected_user": "id",
    "selected_option": "dict",
    "selected_options": "list",
    "selected_date": "str",
    "selected_time": "str",
    "text": "dict",
}
VIEW_FIELDS = {
    "id": "str",
    "type": "str",
    "callback_id": "str",
    "private_metadata": "str",
    "external_id": "str",
    "hash": "str",
    "team_id": "id",
    "app_installed_team_id": "id",
    "root_view_id": "str",
    "previous_view_id": "str",
    "state": "dict",
    "blocks": "list",
}
CONTAINER_FIELDS = {"channel_id": "id", "message_ts": "ts", "thread_ts": "ts", "type": "str"}
# Read by Bolt from every payload, at the top and in the objects it looks into, to build a
# listener's context (slack_bolt/request/internals.py): a wrong type there is an exception in
# Bolt. Only types are checked here; the rules of each payload type check the ids listeners use.
CONTEXT_FIELDS = {
    "enterprise": "ref",
    "team": "ref",
    "user": "ref",
    "channel": "ref",
    "enterprise_id": "str",
    "team_id": "str",
    "user_id": "str",
    "channel_id": "str",
    "thread_ts": "str",
    "authorizations": "objects",
    "response_urls": "objects",
    "response_url": "url",
    "function_execution_id": "str",
    "event": "dict",
    "item": "dict",
    "message": "dict",
    "previous_message": "dict",
    "assistant_thread": "dict",
    "function_data": "dict",
    "view": "dict",
}
CONTEXT_NESTED = ("event", "item", "message", "previous_message", "assistant_thread")
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
    if kind == "objects":
        if not isinstance(value, list):
            return f"is a {type(value).__name__}, not a list"
        return next((f"[{i}] is not an object" for i, v in enumerate(value) if not isinstance(v, dict)), None)
    if kind == "bool":
        return None if isinstance(value, bool) else f"is a {type(value).__name__}, not true/false"
    if kind == "ref":  # a string in events, an object holding one in interactivity payloads
        if isinstance(value, dict):
            value = value.get("id")
            return None if value is None else _kind_problem(value, "str")
        kind = "str"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if kind == "id" and not ID.fullmatch(value):
        return "is not a Slack id"
    if kind == "ts" and not TS.fullmatch(value):
        return "is not a message timestamp"
    if kind == "url" and not URL.fullmatch(value):
        return "is not a URL"
    if len(value) > (MAX_TEXT if kind == "text" else MAX_SHORT):
        return f"is too long ({len(value)} characters)"
    return None


def _fields(obj: dict[str, Any], rules: dict[str, str], where: str) -> str | None:
    for name, kind in rules.items():
        value = obj.get(name)
        if value is not None and (problem := _kind_problem(value, kind)):
            return f"{where}.{name} {problem}" if problem[0] != "[" else f"{where}.{name}{problem}"
    return None


def _id_of(obj: Any, where: str, required: bool = False) -> str | None:
    """`user`, `team`, `channel` objects in interactivity payloads: {"id": "U1", ...}."""
    if obj is None:
        return f"{where} is missing" if required else None
    if not isinstance(obj, dict):
        return f"{where} is a {type(obj).__name__}, not an object"
    value = obj.get("id")
    if value is None:
        return f"{where}.id is missing" if required else None
    if problem := _kind_problem(value, "id"):
        return f"{where}.id {problem}"
    return None


def _depth(body: Any) -> int:
    """How deep containers nest, counted without recursion (a hostile body may nest thousands deep)."""
    deepest, stack = 0, [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and value:
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _context_problem(obj: dict[str, Any], where: str, depth: int = 4) -> str | None:
    """The fields Bolt reads to build a listener's context, where Bolt looks for them."""
    if problem := _fields(obj, CONTEXT_FIELDS, where):
        return problem
    if "response_urls" in obj and obj["response_urls"] is None:  # Bolt takes its len()
        return f"{where}.response_urls is null"
    nested = [(key, obj[key]) for key in CONTEXT_NESTED if isinstance(obj.get(key), dict)]
    if obj.get("authorizations"):
        nested.append(("authorizations[0]", obj["authorizations"][0]))
    for key, child in nested:
        if depth == 0:
            return f"{where}.{key} nests too deep"
        if problem := _context_problem(child, f"{where}.{key}", depth - 1):
            return problem
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
    thread = event.get("assistant_thread")
    if "assistant_thread" in rules:
        if isinstance(thread, dict) and (
            problem := _fields(thread, ASSISTANT_THREAD_FIELDS, "event.assistant_thread")
        ):
            return problem
        if event["type"].startswith("assistant_thread_") and not (
            isinstance(thread, dict) and thread.get("channel_id") and thread.get("thread_ts")
        ):
            return "event.assistant_thread is missing its channel_id or thread_ts"
    for i, item in enumerate(event.get("files") or [] if "files" in rules else []):
        if not isinstance(item, dict):
            return f"event.files[{i}] is not an object"
    return None


def _state_problem(state: dict[str, Any], where: str) -> str | None:
    """A view's input values: {block_id: {action_id: {"type": ..., "value": ...}}}."""
    values = state.get("values")
    if values is None:
        return None
    if not isinstance(values, dict):
        return f"{where}.values is a {type(values).__name__}, not an object"
    for block in values.values():  # keys are the sender's ids: named by position, never quoted
        if not isinstance(block, dict):
            return f"{where}.values has a block that is not an object"
        for element in block.values():
            if not isinstance(element, dict):
                return f"{where}.values has an element that is not an object"
            if problem := _fields(element, ACTION_FIELDS, f"{where}.values.<element>"):
                return problem
    return None


def _view_problem(view: dict[str, Any], kind: Any) -> str | None:
    if problem := _fields(view, VIEW_FIELDS, "payload.view"):
        return problem
    if kind in ("view_submission", "view_closed") and not view.get("callback_id"):
        return "payload.view.callback_id is missing"
    state = view.get("state")
    return _state_problem(state, "payload.view.state") if isinstance(state, dict) else None


def _interactive_problem(body: dict[str, Any]) -> str | None:
    kind = body.get("type")
    if problem := _fields(body, INTERACTIVE_FIELDS, "payload"):
        return problem
    if problem := _id_of(body.get("user"), "payload.user", required=True):
        return problem
    for key in ("team", "channel"):
        if problem := _id_of(body.get(key), f"payload.{key}"):
            return problem
    for name in REQUIRED.get(kind, ()) if isinstance(kind, str) else ():
        if not body.get(name):
            return f"payload.{name} is missing"
    nested = (
        ("container", CONTAINER_FIELDS, "payload.container"),
        ("message", NESTED_MESSAGE_FIELDS, "payload.message"),
    )
    for key, rules, where in nested:
        if isinstance(body.get(key), dict) and (problem := _fields(body[key], rules, where)):
            return problem
    for i, action in enumerate(body.get("actions") or []):
        if not isinstance(action, dict):
            return f"payload.actions[{i}] is not an object"
        if not isinstance(action.get("action_id"), str):
            return f"payload.actions[{i}].action_id is missing"
        if problem := _fields(action, ACTION_FIELDS, f"payload.actions[{i}]"):
            return problem
    if isinstance(body.get("state"), dict) and (problem := _state_problem(body["state"], "payload.state")):
        return problem
    return _view_problem(body["view"], kind) if isinstance(body.get("view"), dict) else None


def _command_problem(body: dict[str, Any]) -> str | None:
    """Slack sends every field of a command as a string; listeners read them with defaults."""
    if problem := _fields(body, COMMAND_FIELDS, "command"):
        return problem
    for name in COMMAND_FIELDS:
        if name in body and body[name] is None:
            return f"command.{name} is null"
    for name in ("command", "user_id", "channel_id", "response_url"):  # respond() needs the url
        if not body.get(name):
            return f"command.{name} is missing"
    return None


def _envelope_problem(body: dict[str, Any]) -> str | None:
    if problem := _fields(body, ENVELOPE_FIELDS, "body"):
        return problem
    for i, item in enumerate(body.get("authorizations") or []):
        if not isinstance(item, dict):
            return f"body.authorizations[{i}] is not an object"
    event = body.get("event")
    if event is None:
        return "body.event is missing" if body.get("type") == "event_callback" else None
    return _event_problem(event)


def payload_problem(body: Any) -> str | None:
    """None for a payload our listeners (and Bolt) can read safely; else a short reason for one log
    line, naming the field but never quoting it."""
    if not isinstance(body, dict):
        return f"the body is a {type(body).__name__}, not an object"
    if _depth(body) > MAX_DEPTH:
        return f"the body nests deeper than {MAX_DEPTH} levels"
    if "command" in body:
        problem, where = _command_problem(body), "command"
    elif "event" in body or body.get("type") in ("event_callback", "url_verification"):
        problem, where = _envelope_problem(body), "body"
    elif body.get("type") in INTERACTIVE_TYPES or any(k in body for k in ("actions", "user", "view")):
        problem, where = _interactive_problem(body), "payload"
    else:
        problem, where = _fields(body, ENVELOPE_FIELDS, "body"), "body"
    return problem or _context_problem(body, where)
