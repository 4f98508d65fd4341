"""The App Home tab: what Switchboard can do, its commands, and the user's recent runs.

`app_home_opened` is subscribed in manifest.yml, so it must always get a 2xx (Slack disables the
subscriptions of apps that fail >5% of deliveries). The view is published in a task after the ack.
More sections (e.g. per-user settings) are added by appending a builder to `SECTIONS`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.db.models import Run
from bot.runtime import Runtime
from bot.slack import install
from bot.slack.output.calls import call
from orchestrators.workflows.command_registry import COMMANDS

log = logging.getLogger(__name__)

Block = dict[str, Any]
Section = Callable[[Runtime, str], Awaitable[list[Block]]]
HOME_BLOCK_LIMIT = 100  # Slack's limit for a Home tab view
RECENT_RUNS = 5
STATUS_ICON = {"ok": "✅", "failed": "⚠️", "limited": "⏳", "interrupted": "⏹️", "running": "…"}

ABOUT = (
    "I answer questions with tools: the weather, the web, a page you link, a channel you're in, the "
    "time anywhere. Mention me in a channel, DM me, keep talking in my threads, open me in the "
    "assistant panel, or share a file (text, Markdown, CSV, JSON, code, PDF, images) and ask about it. "
    "Use *Summarize this thread* from a message's ⋮ menu for a private thread summary."
)


def _text(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def describe_run(run: Run) -> str:
    when = run.started_at.strftime("%b %d %H:%M UTC") if run.started_at else ""
    where = f" in <#{run.channel_id}>" if run.channel_id and run.channel_id[:1] in "CG" else ""
    seconds = f", {run.duration_ms / 1000:.1f} s" if run.duration_ms else ""
    icon = STATUS_ICON.get(run.status, "•")
    return f"{icon} `{run.trigger}`{where} — {run.status}{seconds} · {when} · run {run.id}"


async def about_section(rt: Runtime, user: str) -> list[Block]:
    return [{"type": "header", "text": {"type": "plain_text", "text": "Switchboard"}}, _text(ABOUT)]


async def commands_section(rt: Runtime, user: str) -> list[Block]:
    lines = [f"• `{name}` — {c.description}. {c.usage}" for name, c in COMMANDS.items()]
    lines.append("• `/digest` — scheduled channel summaries (`/digest help`)")
    lines.append("• `/switchboard help` — the list of commands")
    return [{"type": "divider"}, _text("*Commands*\n" + "\n".join(lines))]


async def recent_runs_section(rt: Runtime, user: str) -> list[Block]:
    runs = await rt.db.runs.recent(user, RECENT_RUNS, team=install.served_team())
    body = "\n".join(describe_run(r) for r in runs) or "_Nothing yet: ask me something!_"
    return [{"type": "divider"}, _text("*Your recent runs*\n" + body)]


async def insights_section(rt: Runtime, user: str) -> list[Block]:
    """Admins: `switchboard insights` for the last 30 days (which model habits a workflow covers)."""
    from bot.controls.admin_commands import is_admin
    from bot.ops.insights_report import home_lines

    if not await is_admin(rt, user):
        return []
    body = "\n".join(await home_lines(rt.db))
    return [{"type": "divider"}, _text("*LLM or code? The last 30 days* (admins only)\n" + body)]


SECTIONS: list[Section] = [about_section, commands_section, recent_runs_section, insights_section]


async def home_view(rt: Runtime, user: str) -> dict[str, Any]:
    blocks: list[Block] = []
    for section in SECTIONS:
        try:
            blocks += await section(rt, user)
        except Exception:  # one broken section must not blank the whole tab
            log.exception("home tab section %s failed", getattr(section, "__name__", section))
    return {"type": "home", "blocks": blocks[:HOME_BLOCK_LIMIT]}


def register(app: AsyncApp, rt: Runtime) -> None:
    async def publish(user: str) -> None:
        await call(rt.slack.views_publish, user_id=user, view=await home_view(rt, user))

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any]) -> None:
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str) or not user.startswith(("U", "W")):
            return  # the Messages tab, or a payload without a user: acknowledged, nothing to draw
        rt.tasks.spawn(publish(user), name=f"home tab {user}")
