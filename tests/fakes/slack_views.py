"""views.open for the fake Slack: modals, checked against Slack's documented limits.

Limits from Slack's docs (block-kit/surfaces/modals, reference/surfaces/views): `type: modal`, a
`title` (plain_text, at most 24 characters), `submit` when the modal has inputs, at most 100
blocks, `private_metadata` at most 3000 characters, `callback_id` at most 255, and a trigger_id
that is used once (it expires after 3 s in real Slack; here, after one use).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes.slack_workspace import APP_ID, BOT_ID, TEAM, SlackFault

_ids = itertools.count(1)
MODAL_BLOCK_LIMIT = 100


class ViewMethods:
    """Mixed into FakeSlack: `opened` lists every modal the bot opened, in order."""

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self._used_triggers: set[str] = set()

    def m_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        trigger, view = str(p.get("trigger_id") or ""), p.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not trigger:
            raise SlackFault("invalid_arguments", "[ERROR] missing required field: trigger_id")
        if trigger in self._used_triggers:
            raise SlackFault("expired_trigger_id")
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise SlackFault("invalid_arguments", "[ERROR] view.type must be modal")
        title = view.get("title") or {}
        if title.get("type") != "plain_text" or not 0 < len(title.get("text", "")) <= 24:
            raise SlackFault(
                "invalid_arguments", "[ERROR] must be at most 24 characters [json-pointer:/view/title]"
            )
        blocks = view.get("blocks") or []
        if len(blocks) > MODAL_BLOCK_LIMIT:
            raise SlackFault(
                "invalid_arguments", "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
            )
        if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
            raise SlackFault("invalid_arguments", "[ERROR] submit is required when inputs are present")
        if len(view.get("private_metadata", "")) > 3000 or len(view.get("callback_id", "")) > 255:
            raise SlackFault("invalid_arguments", "[ERROR] private_metadata or callback_id too long")
        self._used_triggers.add(trigger)
        self.opened.append(view)
        shown = {**view, "id": f"VM{next(_ids):07d}", "team_id": TEAM, "app_id": APP_ID, "bot_id": BOT_ID}
        return {"view": {**shown, "state": {"values": {}}, "hash": f"{next(_ids)}.abc"}}
