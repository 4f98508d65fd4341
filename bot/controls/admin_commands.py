"""`/switchboard config` and `/switchboard usage`: workspace admins steer and watch the LLM path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.controls.budget import day_start
from bot.controls.channel_config import (
    CHANNEL_REF,
    CONFIG_USAGE,
    KEYS,
    WORKSPACE,
    ConfigCommand,
    ConfigUsageError,
    parse_config,
)
from bot.slack.output.calls import SLACK_FAILED
from tools.toolkit.errors import InvariantError

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

SUBCOMMANDS = ("config", "usage")
ADMINS_ONLY = "Only workspace admins and owners can change Switchboard's settings."


async def switchboard(rt: Runtime, sub: str, text: str, *, user: str, channel: str, team: str) -> str:
    """`/switchboard config ...` or `/switchboard usage ...`, answered to the asker only."""
    if sub == "config":
        return await config_command(rt, text, user=user, channel=channel, team=team)
    return await usage_command(rt, text, user=user, channel=channel, team=team)


USAGE_USAGE = "Usage: `/switchboard usage [me|#channel|all]` (a channel or all: admins only)."
PERIODS = (("today", None), ("7 days", 7), ("30 days", 30))


async def usage_command(rt: Runtime, text: str, *, user: str, channel: str, team: str) -> str:
    """Tokens, cost and runs for today (UTC), the last 7 and the last 30 days."""
    word = text.strip() or "me"
    where: dict[str, str] = {}
    if word.lower() == "me":
        where, title = {"user": user}, f"<@{user}>"
    elif word.lower() == "all":
        title = "the whole workspace"
    elif match := CHANNEL_REF.match(word):
        where, title = {"channel": match["id"]}, f"<#{match['id']}>"
    else:
        return USAGE_USAGE
    if "user" not in where and not await is_admin(rt, user):
        return (
            "Only workspace admins can see a channel's or the workspace's usage; try `/switchboard usage me`."
        )
    now = datetime.now(UTC)
    lines = [f"*Switchboard usage of {title}*"]
    for label, days in PERIODS:
        since = day_start(now) if days is None else now - timedelta(days=days)
        t = await rt.db.usage.totals(team, since, **where)
        cost = f"${t.cost_usd:,.4f}" + (
            f" (+{t.unpriced_runs} runs without a price)" if t.unpriced_runs else ""
        )
        lines.append(f"• {label}: {t.tokens:,} tokens · {cost} · {t.runs} runs")
    lines.append("_Days are UTC; costs use MODEL_PRICES._")
    return "\n".join(lines)


async def is_admin(rt: Runtime, user: str) -> bool:
    """A workspace admin or owner (Slack's users.info); the console's operator always is."""
    if not rt.slack_available:
        return True
    try:
        found = (await rt.slack.users_info(user=user)).get("user") or {}
    except SLACK_FAILED:
        log.warning("could not look up whether %s is an admin", user, exc_info=True)
        return False
    return bool(found.get("is_admin") or found.get("is_owner") or found.get("is_primary_owner"))


def scope_name(scope: str) -> str:
    return "the workspace" if scope == WORKSPACE else f"<#{scope}>"


async def config_command(rt: Runtime, text: str, *, user: str, channel: str, team: str) -> str:
    try:
        cmd = parse_config(text, channel)
    except ConfigUsageError as exc:
        return exc.user_message
    if not await is_admin(rt, user):
        return ADMINS_ONLY
    if cmd.action == "history":
        return await _history(rt, team)
    if cmd.action == "show":
        return await _show(rt, team, cmd)
    if cmd.key is None:
        raise InvariantError("a config change names no key")
    old = await rt.db.channel_settings.write(team, cmd.scope, cmd.key, cmd.value, user)
    log.info("settings: %s changed %s of %s/%s", user, cmd.key, team, cmd.scope)
    where = scope_name(cmd.scope)
    if cmd.value is None:
        return (
            f"`{cmd.key}` of {where} is unset (was `{_short(old)}`)." if old else f"`{cmd.key}` was not set."
        )
    return f"`{cmd.key}` of {where} is now `{_short(cmd.value)}`" + (
        f" (was `{_short(old)}`)." if old else "."
    )


async def _show(rt: Runtime, team: str, cmd: ConfigCommand) -> str:
    own = await rt.db.channel_settings.rows(team, cmd.scope)
    eff = await rt.db.channel_settings.effective(team, cmd.scope)
    lines = [f"*Switchboard settings of {scope_name(cmd.scope)}*"]
    for key in KEYS:
        value = own.get(key)
        lines.append(f"• `{key}`: " + (f"`{_short(value)}`" if value is not None else "_not set here_"))
    s = rt.settings
    lines += [
        "*In effect here*",
        f"• model `{eff.model or s.openai_model}` · tools {eff.tools} · "
        f"follow-ups {'on' if eff.follow_ups else 'off'}",
        f"• daily caps: per person {_cap(eff.user_daily_tokens, s.user_daily_tokens)}, "
        f"channel {_cap(eff.channel_daily_tokens, s.channel_daily_tokens)}",
        f"• added instructions: {len(eff.instructions)} characters",
        f"_{CONFIG_USAGE}_",
    ]
    return "\n".join(lines)


async def _history(rt: Runtime, team: str) -> str:
    changes = await rt.db.channel_settings.changes(team)
    if not changes:
        return "No setting has been changed yet."
    lines = ["*Recent setting changes*"]
    for c in changes:
        new = "unset" if c.new_value is None else f"`{_short(c.new_value)}`"
        lines.append(
            f"• {c.changed_at:%Y-%m-%d %H:%M} UTC <@{c.user_id}> {scope_name(c.channel_id)} `{c.key}` → {new}"
        )
    return "\n".join(lines)


def _cap(override: int | None, default: int) -> str:
    value = override if override is not None else default
    return "none" if value == 0 else f"{value:,} tokens"


def _short(value: str | None, limit: int = 80) -> str:
    text = " ".join((value or "").split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"
