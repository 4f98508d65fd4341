"""The write side of the fake Slack Web API: chat.*, streaming, assistant.*, reactions.*.

Plain methods named after the API (`m_chat_postMessage` answers chat.postMessage): each takes the
merged request parameters and returns the fields of an `ok: true` answer or raises SlackFault.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.slack_workspace import (
    BOT_ID,
    BOT_USER,
    MARKDOWN_LIMIT,
    PROMPT_LIMIT,
    TEXT_LIMIT,
    SlackFault,
    Workspace,
    check_content,
)

Params = dict[str, Any]


class ChatMethods(Workspace):
    """Posting, editing, deleting and streaming messages; the bot's own messages only."""

    def __init__(self) -> None:
        super().__init__()
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral messages, with `recipient`
        self.streams: dict[str, dict[str, Any]] = {}  # ts -> message started by chat.startStream
        # What each chat.postMessage asked of Slack's link previews (None: the flag was not sent).
        self.unfurls: list[dict[str, Any]] = []

    # --- chat.* -------------------------------------------------------------------------------
    def m_auth_test(self, p: Params) -> Params:
        installed = self.token_teams.get(self.token, self.team)
        if installed.startswith("E"):  # an org-wide installation's token names the org
            return {
                "url": "https://fake.enterprise.slack.com/",
                "team": "Fake org",
                "user": "switchboard",
                "enterprise_id": installed,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
                "is_enterprise_install": True,
            }
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "switchboard",
            "team_id": installed,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def m_chat_postMessage(self, p: Params) -> Params:
        ch = self.writable_channel(p)
        check_content(p)
        msg = self.store(ch, self.bot_message(p, self.next_ts()), p.get("thread_ts"))
        flags = {key: p.get(key) for key in ("unfurl_links", "unfurl_media")}
        self.unfurls.append({"channel": ch.id, "ts": msg["ts"], "text": msg["text"], **flags})
        return {"channel": ch.id, "ts": msg["ts"], "message": msg}

    def m_chat_update(self, p: Params) -> Params:
        ch = self.writable_channel(p, member=False)
        check_content(p)
        msg = self.own_message(ch, str(p.get("ts", "")), "update")
        for key in ("text", "blocks", "markdown_text", "metadata"):
            if key in p:
                msg[key] = p[key]
        if p.get("markdown_text") and not p.get("text"):
            msg["text"] = p["markdown_text"]
        msg["edited"] = {"user": BOT_USER, "ts": self.next_ts()}
        # Slack's answer (see fixtures/slack/api/chat.update.json) carries the message without ts.
        shown = {k: v for k, v in msg.items() if k not in ("ts", "thread_ts", "streaming", "markdown_text")}
        return {"channel": ch.id, "ts": msg["ts"], "text": msg["text"], "message": shown}

    def m_chat_delete(self, p: Params) -> Params:
        ch = self.writable_channel(p, member=False)
        msg = self.own_message(ch, str(p.get("ts", "")), "delete")
        self.remove(ch, msg)
        self.streams.pop(msg["ts"], None)
        return {"channel": ch.id, "ts": msg["ts"]}

    def m_chat_postEphemeral(self, p: Params) -> Params:
        ch = self.writable_channel(p)
        check_content(p)
        if p.get("user") not in ch.members:
            raise SlackFault("user_not_in_channel")
        ts = self.next_ts()
        self.ephemerals.append({**self.bot_message(p, ts), "channel": ch.id, "recipient": p["user"]})
        return {"message_ts": ts}

    def m_chat_getPermalink(self, p: Params) -> Params:
        ch = self.channel_for(p)
        msg = ch.find(str(p.get("message_ts", "")))
        if msg is None:
            raise SlackFault("message_not_found")
        link = f"https://fake.slack.com/archives/{ch.id}/p{msg['ts'].replace('.', '')}"
        if msg.get("thread_ts") and msg["thread_ts"] != msg["ts"]:
            link += f"?thread_ts={msg['thread_ts']}&cid={ch.id}"
        return {"channel": ch.id, "permalink": link}

    def m_chat_startStream(self, p: Params) -> Params:
        ch = self.writable_channel(p)
        if not p.get("thread_ts"):
            raise SlackFault("invalid_arguments", "[ERROR] missing required field: thread_ts")
        msg = self.bot_message({}, self.next_ts()) | {"streaming": True}
        self._stream_text(msg, p)  # refuse an oversized first chunk before anything is stored
        self.store(ch, msg, p["thread_ts"])
        self.streams[msg["ts"]] = msg
        return {"channel": ch.id, "ts": msg["ts"]}

    def m_chat_appendStream(self, p: Params) -> Params:
        msg = self._streaming(p)
        self._stream_text(msg, p)
        return {"channel": p.get("channel"), "ts": msg["ts"]}

    def m_chat_stopStream(self, p: Params) -> Params:
        msg = self._streaming(p)
        self._stream_text(msg, p)
        msg["streaming"] = False
        for key in ("blocks", "metadata"):
            if p.get(key):
                msg[key] = p[key]
        return {}  # Slack answers chat.stopStream with `ok` alone

    def _streaming(self, p: Params) -> dict[str, Any]:
        ch = self.writable_channel(p)
        msg = self.streams.get(str(p.get("ts", "")))
        if msg is None or ch.find(msg["ts"]) is not msg or not msg.get("streaming"):
            raise SlackFault("message_not_in_streaming_state")
        return msg

    def _stream_text(self, msg: dict[str, Any], p: Params) -> None:
        """A streamed message's text is the concatenation of its markdown_text chunks."""
        piece = p.get("markdown_text") or ""
        piece += "".join(c.get("text", "") for c in p.get("chunks") or [] if c.get("type") == "markdown_text")
        if len(piece) > MARKDOWN_LIMIT:
            raise SlackFault(
                "invalid_arguments", f"[ERROR] markdown_text must be at most {MARKDOWN_LIMIT} characters"
            )
        if len(msg["text"]) + len(piece) > TEXT_LIMIT:
            raise SlackFault("msg_too_long")
        msg["text"] += piece

    # --- assistant.*, reactions.* -------------------------------------------------------------
    def m_assistant_threads_setStatus(self, p: Params) -> Params:
        return {}

    def m_assistant_threads_setSuggestedPrompts(self, p: Params) -> Params:
        prompts = p.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise SlackFault("invalid_arguments", "[ERROR] missing required field: prompts")
        if len(prompts) > PROMPT_LIMIT:
            raise SlackFault(
                "invalid_arguments",
                f"[ERROR] no more than {PROMPT_LIMIT} items allowed [json-pointer:/prompts]",
            )
        if any(not isinstance(x, dict) or not x.get("title") or not x.get("message") for x in prompts):
            raise SlackFault("invalid_arguments", "[ERROR] each prompt needs a title and a message")
        return {}

    def m_assistant_threads_setTitle(self, p: Params) -> Params:
        return {}

    def m_reactions_add(self, p: Params) -> Params:
        msg = self.member_channel(p).find(str(p.get("timestamp", "")))
        if msg is None:
            raise SlackFault("message_not_found")
        reactions = msg.setdefault("reactions", [])
        mine = next((r for r in reactions if r["name"] == p.get("name")), None)
        if mine is None:
            reactions.append({"name": p.get("name"), "users": [BOT_USER], "count": 1})
        elif BOT_USER in mine["users"]:
            raise SlackFault("already_reacted")
        else:
            mine["users"].append(BOT_USER)
            mine["count"] += 1
        return {}
