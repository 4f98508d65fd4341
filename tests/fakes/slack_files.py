"""Files on the fake Slack: uploads users shared, served at url_private(_download) like Slack does.

File objects are built from the one Slack published in bolt-python's file_share test payload
(tests/fixtures/slack/events/bolt-python.test_message_file_share.event_payload.json), with ids and
URLs pointing at this fake. A download needs `Authorization: Bearer <token with files:read>`;
without it Slack redirects to its sign-in page instead of sending the file, and so does the fake.
Uploads by the bot go Slack's v2 way (what slack_sdk's files_upload_v2 does): files.getUploadURLExternal
hands out an upload URL, the bytes are POSTed there, files.completeUploadExternal shares the file in
a channel or thread as a message of the bot's. Also here: views.publish (the Home tab), with
Slack's 100-block limit for Home tabs.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.slack_workspace import APP_ID, BOT_ID, BOT_USER, TEAM, Channel, SlackFault

FILE_SHARE = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "slack"
    / "events"
    / "bolt-python.test_message_file_share.event_payload.json"
)
HOME_BLOCK_LIMIT = 100
_ids = itertools.count(1)


def published_file() -> dict[str, Any]:
    return copy.deepcopy(json.loads(FILE_SHARE.read_text())["event"]["files"][0])


class FileMethods:
    """Mixed into FakeSlack: `add_file()` to seed, GET /files-pri/... to download, views.publish."""

    url: str
    scopes: frozenset[str]
    users: dict[str, dict[str, Any]]
    member_channel: Any  # from Workspace
    bot_message: Any
    store: Any
    next_ts: Any

    def init_files(self) -> None:
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}  # file id -> pending upload (name, length, bytes)
        self.downloads: list[tuple[str, bool]] = []  # (file id, authorized) per GET
        self.download_tokens: list[str] = []  # the bearer token of each GET (which workspace)
        self.home_views: dict[str, dict[str, Any]] = {}  # user -> the view published for them

    def file_routes(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_get("/signin", self._signin)
        app.router.add_post("/upload/{file_id}", self._receive_upload)

    def add_file(
        self,
        name: str,
        content: bytes,
        mimetype: str,
        *,
        filetype: str | None = None,
        user: str = "U1",
        size: int | None = None,
        mode: str = "hosted",
        file_id: str | None = None,
    ) -> dict[str, Any]:
        """A Slack file object (as in event.files[]) whose URLs serve `content` from this fake."""
        file_id = file_id or f"F{next(_ids):08d}"
        f = published_file()
        if not mimetype.startswith("image/"):
            for key in [k for k in f if k.startswith(("thumb_", "original_"))]:
                del f[key]
        base = f"{self.url}/files-pri/{TEAM}-{file_id}"
        f |= {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype or name.rsplit(".", 1)[-1].lower(),
            "pretty_type": (filetype or name.rsplit(".", 1)[-1]).upper(),
            "user": user,
            "size": len(content) if size is None else size,
            "mode": mode,
            "url_private": f"{base}/{name}",
            "url_private_download": f"{base}/download/{name}",
            "permalink": f"https://fake.slack.com/files/{user}/{file_id}/{name}",
            "permalink_public": f"https://slack-files.com/{TEAM}-{file_id}-0000",
        }
        self.files[file_id] = (f, content)
        return copy.deepcopy(f)

    def connect_stub(self, file: dict[str, Any]) -> dict[str, Any]:
        """How a file shared from another organisation (Slack Connect) arrives in an event: a stub
        to be looked up with files.info (docs.slack.dev/apis/slack-connect/#check_file_info)."""
        return {
            "id": file["id"],
            "mode": "file_access",
            "file_access": "check_file_info",
            "created": 0,
            "timestamp": 0,
            "user": "",
        }

    def m_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        """The file object (files:read); answer fields as in java-slack-sdk's files.info capture."""
        found = self.files.get(str(p.get("file") or ""))
        if found is None:
            raise SlackFault("file_not_found")
        return {"file": copy.deepcopy(found[0]), "comments": []}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["team_file"].split("-", 1)[-1]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        authorized = token.startswith("xoxb-") and "files:read" in self.scopes
        self.downloads.append((file_id, authorized))
        self.download_tokens.append(token)
        if not authorized:
            raise web.HTTPFound(f"{self.url}/signin?redir=/files-pri/{request.match_info['team_file']}")
        if file_id not in self.files:
            raise web.HTTPNotFound()
        meta, content = self.files[file_id]
        return web.Response(body=content, content_type=meta["mimetype"])

    async def _signin(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<!DOCTYPE html><html><body>Sign in to Slack</body></html>", content_type="text/html"
        )

    # --- the bot's uploads -----------------------------------------------------------------------
    def m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        name, length = str(p.get("filename") or ""), int(p.get("length") or 0)
        if not name or length <= 0:
            raise SlackFault("invalid_arguments", "[ERROR] filename and a positive length are required")
        file_id = f"F{next(_ids):08d}"
        self.uploads[file_id] = {"name": name, "length": length, "data": None}
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    async def _receive_upload(self, request: web.Request) -> web.Response:
        pending = self.uploads.get(request.match_info["file_id"])
        if pending is None:
            raise web.HTTPNotFound()
        pending["data"] = await request.read()
        return web.Response(text=f"OK - {len(pending['data'])}")

    def m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        """Share the uploaded files in `channel_id` (a thread when `thread_ts`): one bot message."""
        given = p.get("files")
        if not isinstance(given, list) or not given:
            raise SlackFault("invalid_arguments", "[ERROR] missing required field: files")
        pending = [(f, self.uploads.get(str(f.get("id")))) for f in given]
        if any(up is None or up["data"] is None for _, up in pending):
            raise SlackFault("file_not_found")
        ch: Channel | None = self.member_channel(p, "channel_id") if p.get("channel_id") else None
        shared = []
        for f, up in pending:
            assert up is not None
            del self.uploads[str(f["id"])]
            obj = self.add_file(up["name"], up["data"], "text/plain", user=BOT_USER, file_id=str(f["id"]))
            obj["title"] = f.get("title") or up["name"]
            shared.append(obj)
        if ch is not None:
            msg = self.bot_message({"text": p.get("initial_comment") or ""}, self.next_ts())
            msg |= {"files": shared, "upload": True, "display_as_bot": False}
            self.store(ch, msg, p.get("thread_ts"))
        return {"files": [{"id": f["id"], "title": f["title"]} for f in shared]}

    def m_views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        user, view = p.get("user_id"), p.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if user not in self.users:
            raise SlackFault("user_not_found")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackFault("invalid_arguments", "[ERROR] view.type must be home")
        blocks = view.get("blocks") or []
        if not isinstance(blocks, list) or len(blocks) > HOME_BLOCK_LIMIT:
            raise SlackFault(
                "invalid_arguments",
                f"[ERROR] no more than {HOME_BLOCK_LIMIT} items allowed [json-pointer:/view/blocks]",
            )
        for i, block in enumerate(blocks):
            text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
            if block.get("type") == "section" and len(text) > 3000:
                raise SlackFault(
                    "invalid_arguments",
                    f"[ERROR] must be at most 3000 characters [json-pointer:/view/blocks/{i}/text/text]",
                )
        self.home_views[str(user)] = view
        shown = {
            "id": f"V{next(_ids):08d}",
            "team_id": TEAM,
            "type": "home",
            "blocks": blocks,
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "hash": f"{next(_ids)}.abc",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        return {"view": shown}
