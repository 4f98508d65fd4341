"""Which workspace an event belongs to: the installing one, not the sender's organisation.

In a Slack Connect channel the envelope's top-level `team_id` (and the event's `team` /
`user_team`) is the organisation of whoever spoke, so keying on it splits one thread into two
conversations and misses follow-ups from the other side. Slack puts the workspace the event was
delivered for in `authorizations[0].team_id` (Bolt's `extract_team_id` prefers it "to make
Events API handling functioning also for shared channels") and in `context_team_id`.
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "T0"


def event_workspace(body: dict[str, Any]) -> str:
    """The installing workspace of an Events API envelope (falls back to the sender's team)."""
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations and isinstance(authorizations[0], dict):
        team = authorizations[0].get("team_id")
        if isinstance(team, str) and team:
            return team
    for key in ("context_team_id", "team_id"):
        team = body.get(key)
        if isinstance(team, str) and team:
            return team
    event = body.get("event")
    team = event.get("team") if isinstance(event, dict) else None
    return team if isinstance(team, str) and team else UNKNOWN
