"""A fake Slack Web API over loopback HTTP: keeps workspace state, records calls, injects faults.

`AsyncWebClient(token="xoxb-…", base_url=fake.api_url)` talks to it like to slack.com. The state
and Slack's limits live in slack_workspace.py, the chat.* methods in slack_chat.py; here are the
HTTP layer, recording, fault injection, the read methods (conversations.*, users.*) and Socket
Mode (apps.connections.open plus a WebSocket), so one fake serves both transports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import BasicAuth, web

from tests.fakes.server import FakeServer
from tests.fakes.slack_chat import ChatMethods
from tests.fakes.slack_files import FileMethods
from tests.fakes.slack_rules import LIST_TYPES, manifest_scopes, needed_scopes, shape_errors
from tests.fakes.slack_socket import SocketMode
from tests.fakes.slack_views import ViewMethods
from tests.fakes.slack_workspace import (
    BLOCK_LIMIT,
    BOT_USER,
    MARKDOWN_LIMIT,
    TEXT_LIMIT,
    Channel,
    NewestFirst,
    SlackFault,
)

__all__ = ["BLOCK_LIMIT", "MARKDOWN_LIMIT", "TEXT_LIMIT", "Call", "Channel", "FakeSlack", "SlackFault"]

T = TypeVar("T")
JSON_FIELDS = ("blocks", "attachments", "prompts", "metadata", "chunks", "loading_messages", "files")
Params = dict[str, Any]


@dataclass
class Call:
    method: str
    params: Params  # query string, form and JSON body merged; JSON-encoded form fields parsed
    token: str = ""  # the bearer token it came with: which workspace's bot made the call


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None
    times: int
    applied: bool = False  # the call took effect before Slack answered with the error
    when: Callable[[Params], bool] | None = None  # only calls with such params fail


def _page(items: Sequence[T], params: Params, default: int = 100) -> tuple[list[T], str]:
    """Slack-style cursor pagination: `limit` (max 999) and an opaque `cursor` (here an offset)."""
    limit = min(int(params.get("limit") or default), 999) or default
    start = int(params.get("cursor") or 0)
    chunk = list(items[start : start + limit])
    nxt = str(start + limit) if start + limit < len(items) else ""
    return chunk, nxt


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


class FakeSlack(FakeServer, SocketMode, FileMethods, ChatMethods, ViewMethods):
    """POST|GET /api/{method}; state in `users` and `channels`; every call lands in `calls`."""

    def __init__(self, scopes: frozenset[str] | None = None) -> None:
        ChatMethods.__init__(self)
        ViewMethods.__init__(self)
        self.init_files()
        FakeServer.__init__(self)
        # The bot token's scopes: those manifest.yml asks for, so an undeclared scope fails here.
        self.scopes = manifest_scopes() if scopes is None else scopes
        self.shape_errors: list[str] = []  # answer fields that Slack's capture does not have
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_url()s
        self.failures: dict[str, list[Failure]] = {}
        # Called with (method, params) once a call has been carried out, before it is answered:
        # a crash test SIGKILLs the bot here, after Slack applied a write the bot never hears of.
        self.after_applied: list[Callable[[str, Params], None]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_acks: list[dict[str, Any]] = []
        # OAuth: the app's credentials, codes Slack's consent page would hand out, and the
        # workspace each issued bot token belongs to (auth.test answers with it).
        self.client_id, self.client_secret = "1234.5678", "fake-client-secret"
        self.oauth_codes: dict[str, str] = {}  # code -> team id, or enterprise id ("E...": org-wide)
        self.token_teams: dict[str, str] = {}
        self.revoked: set[str] = set()  # tokens Slack answers `token_revoked` for
        self.token = ""  # the token of the call being answered

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket", self._socket)
        self.file_routes(app)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"  # the trailing slash matters to AsyncWebClient(base_url=...)

    def response_url(self, name: str = "cmd") -> str:
        return f"{self.url}/response/{name}"

    # --- inspection and faults ----------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def auth_tests(self) -> int:
        """auth.test calls so far: a process verifies its token once, not once per event."""
        return len(self.calls_to("auth.test"))

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
        """Poll until predicate() is truthy; on timeout, fail listing the calls so far."""
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate()):
                    await asyncio.sleep(0.01)
                return result
        except TimeoutError:
            seen = "\n  ".join(_describe(c) for c in self.calls) or "(none)"
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; calls so far:\n  {seen}"
            ) from None

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 60.0) -> list[Call]:
        await self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout, f"{count} x {method}")
        return self.calls_to(method)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str = "internal_error",
        retry_after: int | None = None,
        times: int = 1,
        applied: bool = False,
        when: Callable[[Params], bool] | None = None,
    ) -> None:
        """The next `times` calls to `method` fail: 429 with Retry-After, a 5xx, or ok=false,
        answered as Slack answers errors: `{"ok": false, "error": "<code>"}`.

        `applied=True` is Slack's internal_error/fatal_error case: the call is carried out (state
        changes) and the error is answered anyway, so a blind retry would do it twice.
        `when(params)` narrows it to some calls, e.g. only updates that carry blocks.
        """
        self.failures.setdefault(method, []).append(Failure(status, error, retry_after, times, applied, when))

    # --- HTTP ---------------------------------------------------------------------------------
    async def _response(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {"_raw": await request.text()}
        self.responses.append({**body, "_name": request.match_info["name"]})
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: Params = dict(request.query)
        try:
            if request.can_read_body:
                if request.content_type == "application/json":
                    params |= await request.json()
                else:
                    params |= dict(await request.post())
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_json"})
        for key in JSON_FIELDS:
            if isinstance(params.get(key), str) and params[key][:1] in ("[", "{"):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    return web.json_response({"ok": False, "error": f"invalid_{key}"})
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or params.pop("token", "")
        self.calls.append(Call(method, params, token))
        if method == "oauth.v2.access":  # the app's credentials, as HTTP basic auth, not a token
            return web.json_response(self.oauth_v2_access(request, params))
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if not token.startswith(("xox", "xapp")):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.token = token
        if token in self.revoked:
            return web.json_response({"ok": False, "error": "token_revoked"})
        if failure := self._take_failure(method, params):
            if failure.applied:
                self._answer(method, params)  # whatever it did stays done; its answer is lost
            if failure.status == 429:
                headers = {"Retry-After": str(failure.retry_after or 1)}
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
            refused = {"ok": False, "error": failure.error}
            self.shape_errors += shape_errors(method, refused)
            return web.json_response(refused, status=failure.status)
        return self._answer(method, params)

    def _answer(self, method: str, params: Params) -> web.Response:
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            if missing := self.missing_scope(method, params):
                return web.json_response(
                    {
                        "ok": False,
                        "error": "missing_scope",
                        "needed": missing,
                        "provided": ",".join(sorted(self.scopes)),
                    }
                )
            answer = {"ok": True, **handler(params)}
            self.shape_errors += shape_errors(method, answer)
            for hook in self.after_applied:
                hook(method, params)
            return web.json_response(answer)
        except SlackFault as fault:
            return _refusal(fault)
        except ValueError as exc:  # a number or cursor that does not parse: Slack refuses those too
            return _refusal(SlackFault("invalid_arguments", f"[ERROR] {exc}"))

    def missing_scope(self, method: str, p: Params) -> str | None:
        """The first scope `method` needs that the token lacks (conversation type decides some)."""
        kinds: list[str] = []
        if method == "conversations.list":
            kinds = [
                LIST_TYPES[t] for t in str(p.get("types") or "public_channel").split(",") if t in LIST_TYPES
            ]
        elif method.startswith("conversations.") and p.get("channel"):
            try:
                kinds = [self.kind_of(self.channel_for(p))]
            except SlackFault:
                return None  # the method itself answers channel_not_found
        return next((s for s in needed_scopes(method, kinds) if s not in self.scopes), None)

    @staticmethod
    def kind_of(ch: Channel) -> str:
        return "im" if ch.is_im else "groups" if ch.is_private else "channels"

    def _take_failure(self, method: str, params: Params) -> Failure | None:
        queue = self.failures.get(method)
        failure = next((f for f in queue or [] if f.when is None or f.when(params)), None)
        if queue is None or failure is None:
            return None
        failure.times -= 1
        if failure.times <= 0:
            queue.remove(failure)
        return failure

    # --- conversations.*, users.* -------------------------------------------------------------
    def oauth_v2_access(self, request: web.Request, p: Params) -> Params:
        """The code Slack's consent page gave the installer, exchanged for a bot token; the
        fields of java-slack-sdk's capture (tests/fixtures/slack/api/oauth.v2.access.json)."""
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = BasicAuth(p.get("client_id", ""), p.get("client_secret", ""))
        if (auth.login, auth.password) != (self.client_id, self.client_secret):
            return {"ok": False, "error": "invalid_client_id"}
        team = self.oauth_codes.pop(p.get("code", ""), None)
        if team is None:
            return {"ok": False, "error": "invalid_code"}
        token = f"xoxb-{team}-{len(self.token_teams) + 1}"
        self.token_teams[token] = team
        org_wide = team.startswith("E")  # a Grid org installed at once: no team, the org instead
        return {
            "ok": True,
            "app_id": "A1",
            "authed_user": {"id": "UINSTALLER"},
            "scope": ",".join(sorted(self.scopes)),
            "token_type": "bot",
            "access_token": token,
            "bot_user_id": BOT_USER,
            "team": None if org_wide else {"id": team, "name": f"Workspace {team}"},
            "enterprise": {"id": team, "name": f"Org {team}"} if org_wide else None,
            "is_enterprise_install": org_wide,  # Slack's oauth.v2.access reference example
        }

    def m_conversations_history(self, p: Params) -> Params:
        """Top-level messages and thread parents, newest first, between exclusive bounds."""
        ch = self.member_channel(p)
        lo, hi = ch.bounds(
            float(p.get("oldest") or 0), float(p.get("latest") or 9e12), _flag(p.get("inclusive"))
        )
        page, nxt = _page(NewestFirst(ch.messages, lo, hi), p)
        return {
            "messages": [_public(m, _flag(p.get("include_all_metadata"))) for m in page],
            "has_more": bool(nxt),
            "response_metadata": {"next_cursor": nxt},
        }

    def m_conversations_replies(self, p: Params) -> Params:
        """A thread: its parent, then replies oldest first (ts may name the parent or any reply)."""
        ch = self.member_channel(p)
        msg = ch.find(str(p.get("ts", "")))
        parent = msg and ch.top_level(msg.get("thread_ts") or msg["ts"])
        if parent is None:
            raise SlackFault("thread_not_found")
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or 9e12)
        inclusive = _flag(p.get("inclusive"))
        replies = [
            r
            for r in ch.replies.get(parent["ts"], [])
            if (oldest <= float(r["ts"]) <= latest if inclusive else oldest < float(r["ts"]) < latest)
        ]
        page, nxt = _page([parent, *replies], p)
        return {
            "messages": [_public(m, _flag(p.get("include_all_metadata"))) for m in page],
            "has_more": bool(nxt),
            "response_metadata": {"next_cursor": nxt},
        }

    def m_conversations_members(self, p: Params) -> Params:
        page, nxt = _page(sorted(self.channel_for(p).members), p)
        return {"members": page, "response_metadata": {"next_cursor": nxt}}

    def _info(self, ch: Channel) -> Params:
        info = {
            "id": ch.id,
            "name": ch.name,
            "is_channel": not ch.is_private and not ch.is_im,
            "is_group": ch.is_private and not ch.is_im,
            "is_im": ch.is_im,
            "is_mpim": False,
            "is_private": ch.is_private or ch.is_im,
            "is_archived": False,
            "is_member": BOT_USER in ch.members,
            "is_shared": ch.is_ext_shared,
            "is_ext_shared": ch.is_ext_shared,
            "is_org_shared": False,
            "context_team_id": self.team,
        }
        if ch.is_im:
            info["user"] = next((u for u in sorted(ch.members) if u != BOT_USER), BOT_USER)
        return info

    def m_conversations_info(self, p: Params) -> Params:
        ch = self.channel_for(p)
        info = self._info(ch)
        if _flag(p.get("include_num_members")):
            info["num_members"] = len(ch.members)
        return {"channel": info}

    def m_conversations_list(self, p: Params) -> Params:
        """Channels of the asked `types` (default public_channel); private ones only if the bot is in."""
        types = set(str(p.get("types") or "public_channel").split(","))

        def kind(c: Channel) -> str:
            return "im" if c.is_im else "private_channel" if c.is_private else "public_channel"

        visible = [
            self._info(c)
            for c in self.channels.values()
            if kind(c) in types and (kind(c) == "public_channel" or BOT_USER in c.members)
        ]
        page, nxt = _page(visible, p)
        return {"channels": page, "response_metadata": {"next_cursor": nxt}}

    def m_conversations_join(self, p: Params) -> Params:
        ch = self.channel_for(p)
        if ch.is_private or ch.is_im:
            raise SlackFault("method_not_supported_for_channel_type")
        ch.members.add(BOT_USER)
        return {"channel": self._info(ch)}

    def m_conversations_open(self, p: Params) -> Params:
        users = [u for u in str(p.get("users", "")).split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            raise SlackFault("user_not_found")
        dm_id = f"D{users[0]}"
        if dm_id not in self.channels:
            self.add_channel(dm_id, f"dm-{users[0]}", members=(users[0],), is_im=True)
        return {"channel": {"id": dm_id}}

    def m_users_info(self, p: Params) -> Params:
        user = self.users.get(str(p.get("user", "")))
        if user is None:
            raise SlackFault("user_not_found")
        return {"user": user}


def _public(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    """A stored message as the API shows it: without the fake's own bookkeeping, and without its
    message metadata unless the reader asked for it (`include_all_metadata`, as Slack does)."""
    hidden = {"streaming"} if with_metadata else {"streaming", "metadata"}
    return {k: v for k, v in message.items() if k not in hidden}


def _refusal(fault: SlackFault) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": fault.error}
    if fault.detail:
        body["response_metadata"] = {"messages": [fault.detail]}
    return web.json_response(body)


def _describe(call: Call) -> str:
    shown = {k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v) for k, v in call.params.items()}
    return f"{call.method} {json.dumps(shown, default=str)[:200]}"
