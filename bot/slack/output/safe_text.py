"""Text the bot did not write itself reaches Slack quiet: no broadcast, no ping, no disguised link.

Model answers, status lines, step names, file names, tool errors and digest summaries can carry
Slack markup that acts: `<!channel>`, `<!here>`, `<!everyone>` and `<!subteam^S…>` notify whole
channels or groups, `<@U…>` pings a person, and `<https://evil|Click to verify>` or
`[Click to verify](https://evil)` hides where a link goes. `neutralize` is the one clean-up:
broadcasts become plain `@channel` (a word joiner after the `@` reads the same and notifies
nobody), people become `@name`, a labelled link becomes `label (url)`. Channel links and dates
stay. Whether Slack's `markdown` blocks act on `<!…>`/`<@…>` is not documented, so they are
treated like mrkdwn `text`.

`CleanWebClient` applies it to every chat.* call the process makes (the one place every post
passes), and posts links that do not unfurl unless the caller says otherwise. What people wrote
is stored and shown to the model as they wrote it: only the bot's outgoing text changes.
"""

from __future__ import annotations

import contextvars
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from ssl import SSLContext
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from bot.ops.metrics import CountingWebClient

JOINER = "\u2060"  # WORD JOINER: invisible, and it keeps Slack from reading a mention
SPECIAL = re.compile(r"<!(?P<kind>channel|here|everyone|group)(?:\|[^>]*)?>", re.IGNORECASE)
SUBTEAM = re.compile(r"<!subteam\^(?P<id>[A-Za-z0-9]+)(?:\|@?(?P<label>[^>]*))?>")
USER = re.compile(r"<@(?P<id>[UW][A-Z0-9]+)(?:\|(?P<label>[^<>]*))?>")
BARE = re.compile(r"(?<![\w\u2060])@(?P<kind>channel|here|everyone)\b", re.IGNORECASE)
LINK = re.compile(r"<(?P<url>[^<>|\s@#!][^<>|\s]*)\|(?P<label>[^<>]*)>")  # mrkdwn <url|label>
_LABEL = r"(?:[^\[\]\n]|\[[^\[\]\n]*\])*"  # link text, one level of brackets inside
_TARGET = r"(?:[A-Za-z][\w+.-]*:|www\.)"  # an address Slack would follow: a scheme, or www.
MD_LINK = re.compile(
    rf"!?\[(?P<label>{_LABEL})\]\(\s*(?:<(?P<angled>{_TARGET}[^<>\n]*)>|(?P<url>{_TARGET}[^()\s]*))"
    r"(?:\s+\"[^\"\n]*\")?\s*\)"
)
REF_DEF = re.compile(r"^(?P<indent> {0,3})\[(?P<ref>[^\]\n]+)\]:", re.MULTILINE)  # [1]: https://…
OPEN_TAIL = re.compile(  # a token still being streamed: a `<…`, an `@her`, a `[label](ur`
    rf"(<[^<>\n]{{0,300}}|@\w{{0,9}}|!?\[{_LABEL}(?:\](?:\([^()\n]{{0,500}})?)?)$"
)
TAIL_WINDOW = 1_000  # how far back an unfinished token is looked for


def neutralize(text: str, names: Mapping[str, str] | None = None) -> str:
    """`text` as Slack may show it: nothing in it notifies anyone or disguises a link.

    With `names` (posts others see) every `<@U…>` becomes `@name`, from `names`, its label or
    its id, and pings nobody. Without (an ephemeral message: only its recipient sees it, so a
    mention notifies nobody) user mentions stay readable as Slack shows them.
    """
    text = SPECIAL.sub(lambda m: f"@{JOINER}{m['kind'].lower()}", text)
    text = SUBTEAM.sub(lambda m: f"@{JOINER}{m['label'] or 'group'}", text)
    if names is not None:
        text = USER.sub(lambda m: f"@{JOINER}{names.get(m['id']) or m['label'] or m['id']}", text)
    text = LINK.sub(lambda m: _shown(m["label"], m["url"]), text)
    text = MD_LINK.sub(lambda m: _shown(m["label"], m["angled"] or m["url"]), text)
    text = REF_DEF.sub(lambda m: f"{m['indent']}[{m['ref']}] :", text)  # no longer a definition
    return BARE.sub(lambda m: f"@{JOINER}{m['kind']}", text)


def _shown(label: str, url: str) -> str:
    """A link as plain words and its bare address: Slack links the address, which hides nothing."""
    label = " ".join(label.split())
    return url if not label or label == url else f"{label} ({url})"


def neutralize_blocks(value: Any, names: Mapping[str, str] | None = None) -> Any:
    """Every `text` string in a block tree (sections, markdown, buttons, context), cleaned."""
    if isinstance(value, list):
        return [neutralize_blocks(v, names) for v in value]
    if isinstance(value, dict):
        return {
            k: neutralize(v, names) if k == "text" and isinstance(v, str) else neutralize_blocks(v, names)
            for k, v in value.items()
        }
    return value


def stable_prefix(text: str) -> int:
    """How much of streamed text can be sent now: never half of a mention or a link."""
    start = max(0, len(text) - TAIL_WINDOW)
    match = OPEN_TAIL.search(text, start)
    return match.start() if match else len(text)


def mentioned(text: str) -> set[str]:
    return {m["id"] for m in USER.finditer(text)}


NAME_SECONDS = 600.0
MAX_LOOKUPS = 20  # per text: a flood of mentions costs at most this many users.info calls
_names: dict[tuple[str, str], tuple[float, str]] = {}


async def display_names(client: AsyncWebClient, text: str) -> dict[str, str]:
    """Names of the people mentioned in `text` (users.info, kept ten minutes); unknown ones left out."""
    found: dict[str, str] = {}
    now = time.monotonic()
    for uid in sorted(mentioned(text))[:MAX_LOOKUPS]:
        hit = _names.get((client.base_url, uid))
        if hit is None or now - hit[0] > NAME_SECONDS:
            try:
                user = (await client.users_info(user=uid))["user"]
                profile = user.get("profile") or {}
                name = profile.get("display_name") or user.get("real_name") or user.get("name") or ""
            except Exception:  # a name is a nicety: the id is shown (and not asked for every flush)
                name = ""
            hit = _names[(client.base_url, uid)] = (now, name)
        if hit[1]:
            found[uid] = hit[1]
    return found


async def readable(client: AsyncWebClient, text: str) -> str:
    """neutralize() for posts others see, people shown by name."""
    return neutralize(text, await display_names(client, text))


# Web API methods that show text in a conversation. Ephemeral messages are seen by one person.
SHOWN = {
    "chat.postMessage",
    "chat.update",
    "chat.scheduleMessage",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "assistant.threads.setStatus",
}
SHOWN_TO_ONE = {"chat.postEphemeral"}
UNFURLING = {"chat.postMessage", "chat.scheduleMessage"}  # the methods that take unfurl flags
TEXT_FIELDS = ("text", "markdown_text", "status")
BLOCK_FIELDS = ("blocks", "chunks", "loading_messages")


def cleaned(method: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat.* request body with its text neutralized and, for a post, unfurls off by default."""
    names: dict[str, str] | None = {} if method in SHOWN else None  # callers resolve names first
    out = dict(body)
    for key in TEXT_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = neutralize(out[key], names)
    for key in BLOCK_FIELDS:
        value = out.get(key)
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        if value is not None:
            out[key] = [
                neutralize(v, names) if isinstance(v, str) else v for v in neutralize_blocks(value, names)
            ]
    if method in UNFURLING:
        out.setdefault("unfurl_links", False)
        out.setdefault("unfurl_media", False)
    return out


# The process's HTTP session, for response_url replies built outside a Bolt request (command
# jobs build their own AsyncRespond from the stored body): create_runtime sets it in the task that
# builds the runtime, so every listener, job and recovery started from there inherits it.
reply_session: contextvars.ContextVar[aiohttp.ClientSession | None] = contextvars.ContextVar(
    "reply_session", default=None
)


class SessionRespond(AsyncRespond):
    """Bolt's `respond` over a shared aiohttp session: Bolt's own builds a webhook client, and so a
    new session and connection, for every reply."""

    def __init__(
        self,
        *,
        response_url: str | None,
        session: aiohttp.ClientSession,
        proxy: str | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        super().__init__(response_url=response_url, proxy=proxy, ssl=ssl)
        self.session = session

    async def __call__(  # the same arguments and message as Bolt's AsyncRespond
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[str, Any] | Block] | None = None,
        attachments: Sequence[dict[str, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        if isinstance(text, dict):
            message = _build_message(**text)
        else:
            message = _build_message(
                text=text,
                blocks=blocks,
                attachments=attachments,
                response_type=response_type,
                replace_original=replace_original,
                delete_original=delete_original,
                unfurl_links=unfurl_links,
                unfurl_media=unfurl_media,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        client = AsyncWebhookClient(
            url=self.response_url, session=self.session, proxy=self.proxy, ssl=self.ssl
        )
        return await client.send_dict(message)


def shared(respond: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """`respond` on the process's session when it is Bolt's own (which would open a new one)."""
    session = reply_session.get()
    if type(respond) is AsyncRespond and session is not None and not session.closed:
        return SessionRespond(
            response_url=respond.response_url, session=session, proxy=respond.proxy, ssl=respond.ssl
        )
    return respond


def quiet_respond(respond: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A response_url reply (Bolt's `respond`, which no Web API client carries) cleaned like a
    post: ephemeral replies keep user mentions, any other pings nobody; links never unfurl. It
    goes over the process's HTTP session (`shared`)."""
    respond = shared(respond)

    async def send(**kwargs: Any) -> Any:
        names: dict[str, str] | None = None if kwargs.get("response_type") == "ephemeral" else {}
        if isinstance(kwargs.get("text"), str):
            kwargs["text"] = neutralize(kwargs["text"], names)
        if kwargs.get("blocks"):
            kwargs["blocks"] = neutralize_blocks(kwargs["blocks"], names)
        kwargs.setdefault("unfurl_links", False)
        kwargs.setdefault("unfurl_media", False)
        return await respond(**kwargs)

    return send


class CleanWebClient(CountingWebClient):
    """The process's Slack client: every text it shows passes neutralize(), and a post's links
    do not unfurl (Slack's unfurler would fetch a URL the model wrote, secrets and all) unless
    the caller passes `unfurl_links=True` (bot.slack.output.surface.unfurl_allowed decides)."""

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        body = kwargs.get("json")
        if api_method in SHOWN | SHOWN_TO_ONE and isinstance(body, dict):
            kwargs["json"] = cleaned(api_method, body)
        return await super().api_call(api_method, **kwargs)
