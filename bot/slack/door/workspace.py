"""Which workspace a Slack request belongs to: the installing one, not the sender's organisation.

In a Slack Connect channel the envelope's top-level `team_id` (and the event's `team` /
`user_team`) is the organisation of whoever spoke, so keying on it splits one thread into two
conversations and misses follow-ups from the other side. Slack puts the workspace the event was
delivered for in `authorizations[0].team_id` (Bolt's `extract_team_id` prefers it "to make
Events API handling functioning also for shared channels") and in `context_team_id`.

Interactivity and slash commands carry no `authorizations`: a modal opened in another
organisation's workspace names the installing one in `view.app_installed_team_id`; otherwise the
payload's `team_id` (commands) or `team.id` / `user.team_id` (block actions, shortcuts, views).
The same rule serves events and interactivity, so Bolt's authorization and our own keys agree.
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "T0"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first_authorization(body: dict[str, Any]) -> dict[str, Any] | None:
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations and isinstance(authorizations[0], dict):
        return authorizations[0]
    return None


def _installed_team(body: dict[str, Any]) -> str | None:
    view = body.get("view")
    return _text(view.get("app_installed_team_id")) if isinstance(view, dict) else None


def request_workspace(body: dict[str, Any]) -> str | None:
    """The installing workspace of any Slack request (event, interaction, command), or None."""
    authorization = _first_authorization(body)
    found = _text(authorization.get("team_id")) if authorization else None
    found = found or _installed_team(body)
    for key in ("context_team_id", "team_id"):
        found = found or _text(body.get(key))
    for outer, key in (("event", "team"), ("team", "id"), ("user", "team_id"), ("view", "team_id")):
        inner = body.get(outer)
        found = found or (_text(inner.get(key)) if isinstance(inner, dict) else None)
    return found or _text(body.get("team"))


def request_enterprise(body: dict[str, Any]) -> tuple[str | None, bool]:
    """The Grid org of that same workspace, and whether the app is installed org-wide there.

    Taken from the same place as the workspace, so a Slack Connect sender's org never pairs with
    the installing workspace: with `authorizations`, only they count; a modal of another
    workspace (`app_installed_team_id`) names no org at all.
    """
    authorization = _first_authorization(body)
    if authorization is not None:
        return _text(authorization.get("enterprise_id")), _flag(authorization.get("is_enterprise_install"))
    installed = _installed_team(body)
    team = body.get("team")
    if installed and not (isinstance(team, dict) and team.get("id") == installed):
        return None, False
    org_wide = _flag(body.get("is_enterprise_install"))
    if "context_team_id" in body:
        return _text(body.get("context_enterprise_id")), org_wide
    enterprise = body.get("enterprise")
    found = _text(enterprise.get("id")) if isinstance(enterprise, dict) else _text(enterprise)
    found = found or _text(body.get("enterprise_id"))
    for outer in ("team", "user"):
        inner = body.get(outer)
        found = found or (_text(inner.get("enterprise_id")) if isinstance(inner, dict) else None)
    return found, org_wide


def _flag(value: Any) -> bool:
    return value is True or value == "true"


def event_workspace(body: dict[str, Any]) -> str:
    """The installing workspace of an Events API envelope (falls back to the sender's team)."""
    return request_workspace(body) or UNKNOWN
