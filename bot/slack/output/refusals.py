"""What Slack's refusals mean for the person who asked: one table, worded for them.

Slack refuses a write with `{"ok": false, "error": "<code>"}`; the codes are listed under "Errors"
on each method's page (docs.slack.dev/reference/methods/chat.postMessage, chat.update,
chat.delete). Three kinds matter to an answer, and each has one remedy in bot/slack/output/surface.py:

- WHERE: the conversation takes no message from the bot. The asker is told privately why
  (an ephemeral message in the channel, else a DM).
- CONTENT: this message was refused, a plainer or smaller one may pass: it is retried once so.
- EDIT: an existing message cannot be changed: the answer is posted as a new message.

Transient failures (rate limits, internal errors) never get here: bot/slack/output/calls.py retries them.
"""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

WHERE, CONTENT, EDIT, OTHER = "where", "content", "edit", "other"

_RESTRICTED = "a workspace setting doesn't let me post there; a workspace admin can change that"
# code -> (kind, what it means for the person, completing "I couldn't post in #channel: ...").
REFUSALS: dict[str, tuple[str, str]] = {
    "not_in_channel": (WHERE, "I'm not a member of it. Invite me with `/invite @Switchboard` and ask again"),
    "channel_not_found": (WHERE, "I can't see it: it is private and I'm not in it, or it no longer exists"),
    "is_archived": (WHERE, "the channel is archived, so nobody can post in it"),
    "restricted_action": (WHERE, _RESTRICTED),
    "restricted_action_read_only_channel": (WHERE, "the channel is read-only for me"),
    "restricted_action_thread_only_channel": (WHERE, _RESTRICTED),
    "restricted_action_non_threadable_channel": (WHERE, "the channel does not allow replies in threads"),
    "ekm_access_denied": (
        WHERE,
        "the workspace's administrators have suspended posting there (Enterprise Key Management)",
    ),
    "team_access_not_granted": (
        WHERE,
        "I haven't been granted access to the workspace that channel belongs to; an admin can add me",
    ),
    "msg_too_long": (CONTENT, "the answer was too long for one Slack message"),
    "invalid_blocks": (CONTENT, "Slack did not accept the answer's formatting"),
    "invalid_blocks_format": (CONTENT, "Slack did not accept the answer's formatting"),
    "cant_update_message": (EDIT, "Slack no longer lets me edit that message"),
    "edit_window_closed": (EDIT, "the time to edit that message has passed"),
    "message_not_found": (EDIT, "that message is gone"),
    "cant_delete_message": (EDIT, "Slack does not let me delete that message"),
}


@dataclass(frozen=True)
class Refusal:
    code: str
    kind: str
    meaning: str


def refusal_of(exc: SlackApiError) -> Refusal:
    """The refusal behind a failed call; codes not in the table are told as Slack said them."""
    code = str((exc.response or {}).get("error", "") or "")
    status = getattr(exc.response, "status_code", 200)
    if not code and status >= 500:
        code = f"HTTP {status}"
    kind, meaning = REFUSALS.get(code, (OTHER, f"Slack answered `{code or 'an error'}`"))
    return Refusal(code, kind, meaning)


def kind_of(exc: BaseException) -> str | None:
    return refusal_of(exc).kind if isinstance(exc, SlackApiError) else None


def note_for(channel: str, refusal: Refusal, *, answered: bool) -> str:
    """The private note to the asker: where, why, and whether the answer follows."""
    after = "Here is my answer, for you only." if answered else "You can ask me in a direct message instead."
    return f"I couldn't post in <#{channel}>: {refusal.meaning}. {after}"
