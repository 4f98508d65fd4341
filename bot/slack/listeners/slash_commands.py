"""Slash commands -> code workflows. Parse and ack at once; run and post in a tracked task."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.db.database import database_unavailable
from bot.runtime import Runtime
from bot.slack.answering.approval_prompts import SlackApprover, Where
from bot.slack.answering.command_jobs import REDO, TAG, Runner, accept_command
from bot.slack.answering.conversation import DATABASE_DOWN
from bot.slack.answering.write_approvals import ParkedWrites
from bot.slack.listeners.shortcuts import CapReached, thread_summary
from bot.slack.output.refusals import refusal_of
from bot.slack.output.render import markdown_messages, steps_blocks
from bot.slack.output.surface import AnswerSurface, answer_shown, capped_answer, unfurl_allowed
from bot.work.command_run import (
    AdminCall,
    CommandReply,
    HelpCall,
    ThreadSummaryCall,
    execute_text,
    parse_slash,
)
from bot.work.traced_run import NOBODY, Askers
from orchestrators.workflows.arguments import UsageError
from orchestrators.workflows.command_registry import (
    COMMANDS,
    HELP_COMMANDS,
    WorkflowCall,
    help_text,
)
from tools.toolkit.errors import InvariantError

log = logging.getLogger(__name__)


def footer(command: str, reply: CommandReply) -> dict[str, Any]:
    text = f"`{command}` · {reply.workflow} · {reply.seconds:.1f} s · run {reply.run_id}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


async def run_and_post(rt: Runtime, body: dict[str, Any], respond: Any) -> None:
    """A workflow command: run it, post the result in the channel (or privately when it must)."""
    command, channel = body["command"], body["channel_id"]
    if await _shown_before(rt, body, channel, None):
        return
    reply = await execute_body(rt, body)
    if not reply.ok:
        await respond(response_type="ephemeral", text=reply.text, replace_original=False)
        return
    if reply.ephemeral:  # the result may not be shown to everyone in this channel
        for message in markdown_messages(reply.text, [footer(command, reply)]):
            await respond(response_type="ephemeral", replace_original=False, **message)
        return
    extra = [footer(command, reply), *(steps_blocks(reply.run_id) if reply.run_id else [])]
    stamps = await post_result(rt, body, respond, None, reply.text, extra, private=bool(reply.sources))
    asked = reply.call if isinstance(reply.call, WorkflowCall) and reply.call.name == "/ask" else None
    if stamps and asked is not None and reply.run_id is not None:
        await _remember_ask(rt, body, stamps[0], reply, question=asked.args)


async def post_result(
    rt: Runtime,
    body: dict[str, Any],
    respond: Any,
    thread: str | None,
    text: str,
    extra: list[dict[str, Any]] | None = None,
    *,
    private: bool = False,
) -> list[str]:
    """Post a command's result where it was asked; when Slack refuses it there, the asker gets it
    through the command's response_url, which still reaches them, with what the refusal means."""
    try:
        surface = await shown_in(rt, body, thread)
        return await surface.post_whole(
            capped_answer(text, rt.settings.answer_max_chars), extra, private=private
        )
    except SlackApiError as exc:
        why = refusal_of(exc)
        log.warning("%s: could not post in %s: %s", body["command"], body["channel_id"], why.code)
        await respond(
            response_type="ephemeral",
            replace_original=False,
            text=f"{text}\n\n_(I couldn't post this in <#{body['channel_id']}>: {why.meaning}.)_",
        )
        return []


async def answer_privately(rt: Runtime, body: dict[str, Any], respond: Any) -> None:
    """`/switchboard <admin subcommand>`: the answer is for the asker only."""
    reply = await execute_body(rt, body)
    await respond(response_type="ephemeral", text=reply.text, replace_original=False)


async def execute_body(rt: Runtime, body: dict[str, Any]) -> CommandReply:
    """Run a recorded command: its text is parsed as at the door (the same pure function on the
    same stored text, so it decides the same way), then run as a typed value, its approvals asked
    of the person who typed it, in Slack."""
    team, channel, user = body.get("team_id", ""), body["channel_id"], body["user_id"]
    where = Where(team, channel, None, user)
    return await execute_text(
        rt,
        body["command"],
        body.get("text", ""),
        user=user,
        channel=channel,
        team=team,
        askers=Askers(
            approver=lambda run_id: SlackApprover(rt, where, run_id),
            approvals=lambda run_id: ParkedWrites(rt, where, run_id, None),
        )
        if rt.slack_available
        else NOBODY,
    )


async def summarize_this_thread(rt: Runtime, body: dict[str, Any], respond: Any) -> None:
    channel, thread = body["channel_id"], body["thread_ts"]
    if await _shown_before(rt, body, channel, thread):
        return
    try:
        text = await thread_summary(
            rt,
            team=body.get("team_id", ""),
            channel=channel,
            user=body["user_id"],
            thread_ts=thread,
            trigger="/summarize",
        )
    except CapReached as refused:
        await respond(response_type="ephemeral", text=refused.user_message, replace_original=False)
        return
    await post_result(rt, body, respond, thread, text)


async def shown_in(rt: Runtime, body: dict[str, Any], thread: str | None) -> AnswerSurface:
    """Where a command's result is posted: capped like any answer, tagged for a redo to find."""
    return AnswerSurface(
        rt.slack,
        body["channel_id"],
        thread,
        team=body.get("team_id", ""),
        user=body["user_id"],
        native=False,
        tag=body.get(TAG),
        max_messages=rt.settings.slack_max_messages_per_answer,
        unfurl=await unfurl_allowed(rt, body["channel_id"]),
    )


async def _shown_before(rt: Runtime, body: dict[str, Any], channel: str, thread: str | None) -> bool:
    """A redone job whose dead attempt had posted its whole result: nothing is posted again."""
    if not (body.get(REDO) and body.get(TAG)):
        return False
    try:
        shown = await answer_shown(rt.slack, channel, thread, body[TAG])
    except SlackApiError as exc:  # cannot tell: answering again beats leaving the user in silence
        log.warning("%s: could not look for an earlier result: %s", body[TAG], exc.response.get("error"))
        return False
    if shown:
        log.info("%s: its result was posted before its process died", body[TAG])
    return shown


# What a recorded command job runs; a restarted process finds the runner here by name.
RUNNERS: dict[str, Runner] = {
    "workflow": run_and_post,
    "admin": answer_privately,
    "thread": summarize_this_thread,
}


def register(app: AsyncApp, rt: Runtime) -> None:
    async def recorded(kind: str, body: dict[str, Any], ack: Any) -> bool:
        """The job is in the database; if the database is down, the ack apologises instead."""
        try:
            await accept_command(rt, kind, body)
            return True
        except Exception as exc:  # DB errors share no class: sorted below
            if not database_unavailable(exc):
                raise
            log.error("database unavailable, refusing %s: %s", body.get("command"), exc)
            await ack(response_type="ephemeral", text=DATABASE_DOWN)
            return False

    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        """Parse, record the job (before the ack, so no crash loses it), then ack at once."""
        try:
            call = parse_slash(body["command"], body.get("text", ""), in_thread=bool(body.get("thread_ts")))
        except UsageError as exc:
            await ack(response_type="ephemeral", text=exc.user_message)
            return
        if isinstance(call, HelpCall):
            await ack(response_type="ephemeral", text=help_text())
        elif isinstance(call, AdminCall):
            if await recorded("admin", body, ack):
                await ack()  # the answer (it may look up Slack and the database) comes via respond
        elif isinstance(call, ThreadSummaryCall):
            if await recorded("thread", body, ack):
                await ack(response_type="ephemeral", text="Working on it… (`summarize_thread`)")
        elif await recorded("workflow", body, ack):
            await ack(response_type="ephemeral", text=f"Working on it… (`{call.command.workflow}`)")

    for name in [*COMMANDS, *HELP_COMMANDS]:
        app.command(name)(on_command)


async def _remember_ask(
    rt: Runtime, body: dict[str, Any], answer_ts: str, reply: CommandReply, *, question: str
) -> None:
    """A reply in the thread of an /ask answer continues that conversation."""
    convo = await rt.db.conversations.get_or_create(body.get("team_id", ""), body["channel_id"], answer_ts)
    if convo.id is None:
        raise InvariantError("a stored conversation has no id")
    await rt.db.conversations.add_messages(
        convo.id,
        [{"role": "user", "content": question}, {"role": "assistant", "content": reply.text}],
        run_id=reply.run_id,
        sources=reply.sources,
    )
