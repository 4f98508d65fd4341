"""Slack's rules that the fake enforces: the scopes each method needs, and the answer shapes.

Scopes: the method -> scope table below is from Slack's method reference (docs.slack.dev/reference/
methods/<method>, "Required scopes", bot token column). The fake grants exactly the bot scopes in
manifest.yml, so a call the manifest does not cover fails with `missing_scope` as it would in a
real workspace. Conversation methods need the scope of the conversation's type (channels:, groups:,
im:, mpim:).

Shapes: every `ok: true` answer the fake gives must only use field names that Slack's own capture of
that method has (tests/fixtures/slack/api/<method>.json, from java-slack-sdk); a field the fake
invents shows up in `shape_errors`, which the test fixture asserts empty.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
API_CAPTURES = ROOT / "tests" / "fixtures" / "slack" / "api"

# method -> the scope it needs; "{kind}" is replaced by the conversation's type prefix.
METHOD_SCOPES: dict[str, str | None] = {
    "auth.test": None,
    "apps.connections.open": None,  # app-level token, connections:write
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.getPermalink": None,
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "assistant.threads.setStatus": "assistant:write",
    "assistant.threads.setSuggestedPrompts": "assistant:write",
    "assistant.threads.setTitle": "assistant:write",
    "conversations.history": "{kind}:history",
    "conversations.replies": "{kind}:history",
    "conversations.info": "{kind}:read",
    "conversations.members": "{kind}:read",
    "conversations.list": "{kind}:read",
    "conversations.join": "channels:join",
    "conversations.open": "im:write",
    "users.info": "users:read",
    "reactions.add": "reactions:write",
    "views.publish": None,
    "views.open": None,
    "files.info": "files:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.download": "files:read",  # not a method: GET of a file's url_private(_download)
}
FREE_FORM = {"blocks", "attachments"}  # Block Kit: what the bot posted comes back as it was
LIST_TYPES = {"public_channel": "channels", "private_channel": "groups", "im": "im", "mpim": "mpim"}


def manifest_scopes(path: Path = ROOT / "manifest.yml") -> frozenset[str]:
    manifest = yaml.safe_load(path.read_text())
    return frozenset(manifest["oauth_config"]["scopes"]["bot"])


def needed_scopes(method: str, kinds: list[str]) -> list[str]:
    """The scopes `method` needs; `kinds` are the conversation types it touches (e.g. ["groups"])."""
    scope = METHOD_SCOPES.get(method, "unknown")
    if scope is None:
        return []
    if "{kind}" in scope:
        return [scope.format(kind=k) for k in kinds or ["channels"]]
    return [scope]


# --- answer shapes ------------------------------------------------------------------------------
@functools.cache
def capture(method: str) -> dict[str, Any] | None:
    path = API_CAPTURES / f"{method}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _union(items: list[Any]) -> dict[str, Any] | None:
    """A list in a capture holds one example of each variant: merge their dict fields."""
    merged: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict):
            for key, value in item.items():
                if key not in merged or (isinstance(value, dict) and not merged[key]):
                    merged[key] = value
    return merged or None


def unknown_fields(answer: Any, shape: Any, path: str = "") -> list[str]:
    """Field paths in `answer` that the capture `shape` does not have (free-form `{}` allows any)."""
    if isinstance(answer, dict) and isinstance(shape, dict):
        if not shape:
            return []
        out: list[str] = []
        for key, value in answer.items():
            if key in FREE_FORM:
                continue
            if key not in shape:
                out.append(f"{path}/{key}")
            else:
                out += unknown_fields(value, shape[key], f"{path}/{key}")
        return out
    if isinstance(answer, list) and isinstance(shape, list):
        merged = _union(shape)
        if merged is None:
            return []
        return [p for i, item in enumerate(answer) for p in unknown_fields(item, merged, f"{path}/{i}")]
    return []


# A capture can miss a field Slack does send for some objects: the same object in a sibling capture
# counts too (an IM's `user`, shown by conversations.open's capture, is in conversations.info too).
SIBLINGS = {"conversations.info": ["conversations.open"]}


def shape_errors(method: str, answer: dict[str, Any]) -> list[str]:
    shapes = [s for s in (capture(m) for m in [method, *SIBLINGS.get(method, [])]) if s is not None]
    if not shapes:
        return []
    unknown = [set(unknown_fields(answer, shape)) for shape in shapes]
    return [f"{method}: {p}" for p in sorted(set.intersection(*unknown))]
