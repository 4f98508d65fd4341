"""Per-workspace and per-channel settings: what they mean, how they combine, how admins write them.

Pure logic (no Slack, no database): the `/switchboard config` grammar and the merge of a
workspace's row with a channel's. A channel's value wins; prompts add up (workspace, then channel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.settings import Settings, bounds, longest
from tools.toolkit.errors import UserFacingError

WORKSPACE = "*"  # the channel_id of a workspace-wide row
MAX_PROMPT = 4_000
CHANNEL_REF = re.compile(r"^<#(?P<id>[CGD][A-Z0-9]+)(\|[^>]*)?>$")
MODEL_NAME = re.compile(rf"^[\w.:/@-]{{1,{longest('openai_model')}}}$")  # as OPENAI_MODEL
TOOL_NAME = re.compile(r"^[\w-]{1,64}$")

# The two daily caps are also operator settings (USER_DAILY_TOKENS, CHANNEL_DAILY_TOKENS): their
# wording and bounds come from those fields, so App Home, /switchboard config and the docs agree.
CAPS = ("user_daily_tokens", "channel_daily_tokens")


def title(key: str) -> str:
    """The short label of a setting that is also an operator setting."""
    return str(Settings.model_fields[key].title)


KEYS = {
    "prompt": "instructions added to Switchboard's own prompt (never replacing its safety rules)",
    "model": "the model this channel's runs use",
    "tools": "`all`, `only a,b` (just these) or `except a,b` (all but these)",
    "follow_ups": "`on`: thread replies are answered without a mention; `off`: only mentions",
    **{key: title(key).lower() for key in CAPS},
}

CONFIG_USAGE = (
    "Usage: `/switchboard config [show] [#channel|workspace]`, "
    "`/switchboard config set [#channel|workspace] <key> <value>`, "
    "`/switchboard config unset [#channel|workspace] <key>`, `/switchboard config history`. Keys: "
    + "; ".join(f"`{k}` — {v}" for k, v in KEYS.items())
)


class ConfigUsageError(UserFacingError, ValueError):
    """Malformed `/switchboard config`; the message is the usage line or what is wrong."""


@dataclass(frozen=True)
class ToolChoice:
    """Which tools a channel offers: all, only some, or all but some."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    def allows(self, name: str) -> bool:
        return (self.only is None or name in self.only) and name not in self.excluded

    @classmethod
    def parse(cls, text: str) -> ToolChoice:
        words = text.replace(",", " ").split()
        if not words or words == ["all"]:
            return cls()
        kind, names = words[0].lower(), words[1:]
        if kind not in ("only", "except") or not names or not all(TOOL_NAME.match(n) for n in names):
            raise ConfigUsageError("`tools` takes `all`, `only a,b` or `except a,b` (tool names).")
        return cls(only=frozenset(names)) if kind == "only" else cls(excluded=frozenset(names))

    def __str__(self) -> str:
        if self.only is not None:
            return "only " + ",".join(sorted(self.only))
        return "except " + ",".join(sorted(self.excluded)) if self.excluded else "all"


@dataclass(frozen=True)
class Effective:
    """The settings one run uses, after the workspace's and the channel's rows are combined."""

    instructions: str = ""
    model: str | None = None
    tools: ToolChoice = ToolChoice()
    follow_ups: bool = True
    user_daily_tokens: int | None = None  # None: the operator's default (USER_DAILY_TOKENS)
    channel_daily_tokens: int | None = None


def combine(rows: list[dict[str, str | None]]) -> Effective:
    """Rows from the widest (workspace) to the narrowest (channel); later values win."""
    prompts = [r["prompt"] for r in rows if r.get("prompt")]
    merged: dict[str, str] = {}
    for row in rows:
        merged.update({k: v for k, v in row.items() if v is not None and k != "prompt"})
    return Effective(
        instructions="\n\n".join(p for p in prompts if p),
        model=merged.get("model"),
        tools=ToolChoice.parse(merged.get("tools", "all")),
        follow_ups=merged.get("follow_ups", "on") == "on",
        user_daily_tokens=int(merged["user_daily_tokens"]) if "user_daily_tokens" in merged else None,
        channel_daily_tokens=int(merged["channel_daily_tokens"])
        if "channel_daily_tokens" in merged
        else None,
    )


def check_value(key: str, raw: str) -> str:
    """The stored form of a value, or ConfigUsageError saying what is accepted."""
    value = raw.strip()
    if key == "prompt":
        if not value or len(value) > MAX_PROMPT:
            raise ConfigUsageError(f"`prompt` takes 1 to {MAX_PROMPT} characters.")
        return value
    if key == "model":
        if not MODEL_NAME.match(value):
            raise ConfigUsageError("`model` takes a model name such as `gpt-5.4-mini`.")
        return value
    if key == "tools":
        return str(ToolChoice.parse(value))
    if key == "follow_ups":
        if value.lower() not in ("on", "off"):
            raise ConfigUsageError("`follow_ups` takes `on` or `off`.")
        return value.lower()
    if key in CAPS:
        if not value.isdigit() or int(value) > (bounds(key)[1] or 0):
            raise ConfigUsageError(f"`{key}` takes a whole number of tokens (0 = no cap).")
        return str(int(value))
    raise ConfigUsageError(f"I don't know the setting `{key}`.\n{CONFIG_USAGE}")


@dataclass(frozen=True)
class ConfigCommand:
    action: str  # show | set | unset | history
    scope: str  # a channel id, or WORKSPACE
    key: str | None = None
    value: str | None = None


def parse_config(text: str, here: str) -> ConfigCommand:
    """`[show|set|unset|history] [#channel|workspace] [key [value...]]`; `here` is the default scope."""
    words = text.split(maxsplit=1)
    action = words[0].lower() if words else "show"
    rest = words[1] if len(words) > 1 else ""
    if action not in ("show", "set", "unset", "history"):
        action, rest = "show", text
    if action == "history":
        return ConfigCommand("history", here)
    scope = here
    first, _, after = rest.strip().partition(" ")
    if first.lower() == "workspace":
        scope, rest = WORKSPACE, after
    elif match := CHANNEL_REF.match(first):
        scope, rest = match["id"], after
    if action == "show":
        if rest.strip():
            raise ConfigUsageError(CONFIG_USAGE)
        return ConfigCommand("show", scope)
    key, _, value = rest.strip().partition(" ")
    key = key.lower()
    if key not in KEYS:
        raise ConfigUsageError(f"Name a setting.\n{CONFIG_USAGE}" if not key else f"Unknown setting `{key}`.")
    if action == "unset":
        return ConfigCommand("unset", scope, key)
    return ConfigCommand("set", scope, key, check_value(key, value))
