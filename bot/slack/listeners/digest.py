"""/digest: add, list, remove and run scheduled channel summaries."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, assert_never

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.db.models import DigestSchedule
from bot.db.workspaces.digest_schedules import ChannelFull
from bot.digests.grammar import (
    DIGEST_USAGE,
    DigestAdd,
    DigestCommand,
    DigestHelp,
    DigestList,
    DigestRemove,
    DigestRun,
    check_zone,
    next_fire_times,
    parse_digest,
)
from bot.digests.permissions import (
    MAX_PER_CHANNEL,
    channel_full,
    is_admin,
    may_manage,
    why_not_add,
    why_not_post,
)
from bot.logging_setup import message_text
from bot.runtime import Runtime
from orchestrators.workflows.arguments import ChannelRef, UsageError
from tools.read_channel import ensure_member, resolve_channel
from tools.toolkit.context import MemoryTrace
from tools.toolkit.errors import InvariantError
from tools.toolkit.registry import ToolError

log = logging.getLogger(__name__)


def next_run_text(schedule: DigestSchedule) -> str:
    try:
        found = next_fire_times(schedule.cron, schedule.timezone, datetime.now(UTC), 1)
    except (ValueError, KeyError):
        found = []
    if not found:
        return "never (this schedule cannot fire; remove it)"
    return f"{found[0]:%a %d %b %H:%M} ({schedule.timezone})"


def describe(schedule: DigestSchedule) -> str:
    source = (
        "" if schedule.source_channel_id == schedule.channel_id else f" from <#{schedule.source_channel_id}>"
    )
    quiet = ", quiet" if schedule.quiet else ""
    return (
        f"*{schedule.id}* · <#{schedule.channel_id}>{source} · {schedule.description} "
        f"({schedule.timezone}{quiet}) · next {next_run_text(schedule)} · by <@{schedule.creator_id}>"
        + (f" · last: {schedule.last_status}" if schedule.last_status else "")
    )


class DigestCommands:
    """The /digest verbs, each returning the text to show the user."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def handle(self, text: str, *, user: str, channel: str, team: str) -> str:
        try:
            command = parse_digest(text)
        except UsageError as exc:
            return exc.user_message
        try:
            return await self._do(command, user=user, channel=channel, team=team)
        except ToolError as exc:
            return exc.user_message

    async def _do(self, command: DigestCommand, *, user: str, channel: str, team: str) -> str:
        if isinstance(command, DigestAdd):
            return await self.add(command, user=user, channel=channel, team=team)
        if isinstance(command, DigestList):
            schedules = await self.rt.db.digests.all(team=team, channel=channel)
            if not schedules:
                return "No digests post here or summarize this channel. " + DIGEST_USAGE
            return "\n".join(describe(s) for s in schedules)
        if isinstance(command, DigestRemove):
            return await self.remove(command.id, user=user, team=team)
        if isinstance(command, DigestRun):
            return await self.run_now(command.id, user=user, team=team)
        if isinstance(command, DigestHelp):
            return DIGEST_USAGE
        assert_never(command)

    async def _channel(self, ref: ChannelRef, user: str) -> tuple[str, str]:
        ctx = self.rt.tool_context(MemoryTrace(), user=user)
        channel_id, name = await resolve_channel(ctx, ref.id or f"#{ref.name}")
        await ensure_member(ctx, channel_id, name)
        return channel_id, name

    async def add(self, command: DigestAdd, *, user: str, channel: str, team: str) -> str:
        target_id, target = await self._channel(command.target, user)
        source_id, source = (target_id, target)
        if command.source is not None:
            source_id, source = await self._channel(command.source, user)
        info = (await self.rt.slack.conversations_info(channel=target_id))["channel"]
        if not info.get("is_member"):
            return f"I can't post in #{target}: invite me first with `/invite @Switchboard`, then try again."
        why = await why_not_post(self.rt, team=team, creator=user, source=source_id, target=target_id)
        if why:
            return f"I can't post a digest of #{source} in #{target}: {why}."
        zone = command.timezone or await self._user_zone(user)
        admin = await is_admin(self.rt, user)
        why = None if admin else why_not_add(command.cron, zone)
        if why:
            return f"No digest set: {why}."
        try:
            schedule = await self.rt.db.digests.add(
                cap=None if admin else MAX_PER_CHANNEL,
                team_id=team,
                channel_id=target_id,
                source_channel_id=source_id,
                cron=command.cron,
                timezone=zone,
                description=command.description,
                quiet=command.quiet,
                creator_id=user,
            )
        except ChannelFull as full:
            return f"No digest set: {channel_full(target_id, full.existing)}."
        if self.rt.digest_scheduler is not None and self.rt.settings.run_scheduler:
            await self.rt.digest_scheduler.added(schedule)
        return (
            f"Digest {schedule.id} set: a summary of #{source} posted in #{target} "
            f"{command.description} ({zone}). Next: {next_run_text(schedule)}."
        )

    async def _user_zone(self, user: str) -> str:
        try:
            tz = (await self.rt.slack.users_info(user=user))["user"].get("tz") or "UTC"
            return check_zone(tz)
        except (SlackApiError, UsageError):
            return "UTC"

    async def _managed(
        self, schedule_id: int, *, user: str, team: str, action: str, hint: str = ""
    ) -> DigestSchedule | str:
        """The workspace's digest `schedule_id` if `user` may `action` it, else the reply saying
        why not (`hint` follows a "no such digest")."""
        schedule = await self.rt.db.digests.get(schedule_id)
        if schedule is None or schedule.team_id != team:
            return f"There is no digest {schedule_id}.{hint}"
        if not await may_manage(self.rt, schedule, user):
            return (
                f"Only <@{schedule.creator_id}> (who created digest {schedule_id}) "
                f"or a workspace admin can {action} it."
            )
        return schedule

    async def remove(self, schedule_id: int, *, user: str, team: str) -> str:
        hint = " `/digest list` shows this channel's digests."
        found = await self._managed(schedule_id, user=user, team=team, action="remove", hint=hint)
        if isinstance(found, str):
            return found
        await self.rt.db.digests.remove(schedule_id)
        if self.rt.digest_scheduler is not None:
            await self.rt.digest_scheduler.removed(schedule_id)
        return f"Digest {schedule_id} removed."

    async def run_now(self, schedule_id: int, *, user: str, team: str) -> str:
        schedule = await self._managed(schedule_id, user=user, team=team, action="run")
        if isinstance(schedule, str):
            return schedule
        if self.rt.digest_scheduler is None:
            raise InvariantError("no digest scheduler in this process")
        outcome = await self.rt.digest_scheduler.run(schedule, datetime.now(UTC), manual=True)
        return f"Digest {schedule_id}: {outcome} in <#{schedule.channel_id}>."


def register(app: AsyncApp, rt: Runtime) -> None:
    commands = DigestCommands(rt)

    async def run(body: dict[str, Any], respond: Any) -> None:
        try:
            text = await commands.handle(
                body.get("text", ""),
                user=body["user_id"],
                channel=body["channel_id"],
                team=body.get("team_id", ""),
            )
        except Exception as exc:  # every path answers the person who asked
            log.exception("/digest %s failed", message_text(body.get("text", "")))
            error = exc.response.get("error") if isinstance(exc, SlackApiError) and exc.response else None
            text = f"Sorry, `/digest` failed{f' (Slack said {error})' if error else ''}. Please try again."
        await respond(response_type="ephemeral", text=text, replace_original=False)

    @app.command("/digest")
    async def on_digest(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack(response_type="ephemeral", text="Working on it…")
        rt.tasks.spawn(run(body, respond), name=f"/digest {body.get('trigger_id')}")
