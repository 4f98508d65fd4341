"""Admins edit a channel's (or the workspace's) settings from the App Home tab, in a modal.

The Home tab gets a "Channel settings" section for workspace admins only: a channel picker and a
"Workspace settings" button, each opening a modal with the current values. Submitting checks every
value with the same rules as `/switchboard config`, stores the changed ones (each change recorded
with who and when) and refreshes the Home tab. Admin rights are checked again on submission: a
view's payload can be replayed by anyone who has seen it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.controls.admin_commands import is_admin, scope_name
from bot.controls.channel_config import CAPS, KEYS, WORKSPACE, ConfigUsageError, check_value, title
from bot.runtime import Runtime
from bot.slack.listeners import home
from bot.slack.output.calls import call

log = logging.getLogger(__name__)

PICK_CHANNEL = "settings_pick_channel"
PICK_WORKSPACE = "settings_workspace"
CALLBACK = "channel_settings"
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{1,31}$")  # the picker offers public and private channels
Block = dict[str, Any]

LABELS = {
    "prompt": "Added instructions",
    "model": "Model",
    "tools": "Tools (all, only a,b, except a,b)",
    "follow_ups": "Answer thread replies without a mention (on/off)",
    **{key: title(key) for key in CAPS},  # as the operator settings' fields name them
}


async def settings_section(rt: Runtime, user: str) -> list[Block]:
    """Only admins see it; everyone else's Home tab is unchanged."""
    if not await is_admin(rt, user):
        return []
    picker = {
        "type": "conversations_select",
        "action_id": PICK_CHANNEL,
        "placeholder": {"type": "plain_text", "text": "Pick a channel"},
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    button = {
        "type": "button",
        "action_id": PICK_WORKSPACE,
        "text": {"type": "plain_text", "text": "Workspace settings"},
        "value": WORKSPACE,
    }
    text = "*Channel settings* (admins only): prompt, model, tools, follow-ups and daily caps."
    return [
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": "settings_pick", "elements": [picker, button]},
    ]


def settings_modal(team: str, scope: str, current: dict[str, str]) -> dict[str, Any]:
    """One optional input per setting, filled with what is set on exactly this scope."""
    blocks: list[Block] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"Settings of {scope_name(scope)}. Leave a field empty to unset it.",
            },
        }
    ]
    for key in KEYS:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": key, "multiline": key == "prompt"}
        if current.get(key):
            element["initial_value"] = current[key]
        blocks.append(
            {
                "type": "input",
                "block_id": key,
                "optional": True,
                "label": {"type": "plain_text", "text": LABELS[key]},
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": CALLBACK,
        "private_metadata": json.dumps({"team": team, "scope": scope}),
        "title": {"type": "plain_text", "text": "Switchboard settings"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def submitted(values: dict[str, Any]) -> tuple[dict[str, str | None], dict[str, str]]:
    """({key: stored value or None to unset}, {block_id: error}) from a view's state."""
    chosen: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for key in KEYS:
        raw = ((values.get(key) or {}).get(key) or {}).get("value") or ""
        if not raw.strip():
            chosen[key] = None
            continue
        try:
            chosen[key] = check_value(key, raw)
        except ConfigUsageError as exc:
            errors[key] = exc.user_message.replace("`", "")[:150]
    return chosen, errors


def register(app: AsyncApp, rt: Runtime) -> None:
    if settings_section not in home.SECTIONS:  # one list per process; apps may be built again (tests)
        home.SECTIONS.append(settings_section)

    async def open_modal(body: dict[str, Any], scope: str) -> None:
        user, trigger = body["user"]["id"], body.get("trigger_id")
        if not trigger or not await is_admin(rt, user):
            return
        team = team_of(body)
        current = await rt.db.channel_settings.rows(team, scope)
        try:
            await call(rt.slack.views_open, trigger_id=trigger, view=settings_modal(team, scope, current))
        except SlackApiError as exc:  # e.g. expired_trigger_id: the click is older than 3 s
            log.warning("settings: could not open the modal: %s", exc.response.get("error"))

    @app.action(PICK_CHANNEL)
    async def on_pick_channel(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        channel = action.get("selected_conversation") or action.get("selected_channel")
        if isinstance(channel, str) and CHANNEL_ID.fullmatch(channel):
            rt.tasks.spawn(open_modal(body, channel), name="settings modal")

    @app.action(PICK_WORKSPACE)
    async def on_pick_workspace(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        rt.tasks.spawn(open_modal(body, WORKSPACE), name="settings modal")

    async def save(team: str, scope: str, user: str, chosen: dict[str, str | None]) -> None:
        current = await rt.db.channel_settings.rows(team, scope)
        for key, value in chosen.items():
            if current.get(key) != value:
                await rt.db.channel_settings.write(team, scope, key, value, user)
                log.info("settings: %s changed %s of %s/%s from the Home tab", user, key, team, scope)
        await call(rt.slack.views_publish, user_id=user, view=await home.home_view(rt, user))

    @app.view(CALLBACK)
    async def on_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        user, team = body["user"]["id"], team_of(body)
        scope = modal_scope(view.get("private_metadata"), team)
        if scope is None:
            log.info("settings: a submission by %s names no scope it may change", user)
            await ack(response_action="errors", errors={"prompt": "This form is out of date; open it again."})
            return
        chosen, errors = submitted((view.get("state") or {}).get("values") or {})
        if not errors and not await is_admin(rt, user):
            errors = {"prompt": "Only workspace admins and owners can change Switchboard's settings."}
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        rt.tasks.spawn(save(team, scope, user, chosen), name="save settings")


def team_of(body: dict[str, Any]) -> str:
    """The clicker's workspace: the payload's team, else the user's (org-wide installs send no team)."""
    return (body.get("team") or {}).get("id") or body["user"].get("team_id") or ""


def modal_scope(metadata: Any, team: str) -> str | None:
    """The scope a submitted modal changes: the one its metadata names, if that is the workspace or a
    channel id, in the submitter's own workspace; None for anything else (out of date or forged)."""
    try:
        where = json.loads(metadata) if isinstance(metadata, str) else None
    except ValueError:
        return None
    if not isinstance(where, dict) or where.get("team") != team or not team:
        return None
    scope = where.get("scope")
    if scope == WORKSPACE or (isinstance(scope, str) and CHANNEL_ID.fullmatch(scope)):
        return scope
    return None
