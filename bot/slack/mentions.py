"""Broadcast and user-group mentions in model and tool text are defused before Slack sees them.

`<!channel>`, `<!here>`, `<!everyone>` and `<!subteam^S…>` notify whole channels or groups; in
text the bot posts they become plain `@channel` etc. with a word joiner after the `@`, which reads
the same and notifies nobody. Bare `@here` words get the same joiner. Only the bot's outgoing
text is changed: what people wrote is stored and shown to the model as they wrote it.
"""

from __future__ import annotations

import re
from typing import Any

JOINER = "\u2060"  # WORD JOINER: invisible, and it keeps Slack from reading a mention
SPECIAL = re.compile(r"<!(?P<kind>channel|here|everyone|group)(?:\|[^>]*)?>", re.IGNORECASE)
SUBTEAM = re.compile(r"<!subteam\^(?P<id>[A-Za-z0-9]+)(?:\|@?(?P<label>[^>]*))?>")
BARE = re.compile(r"(?<![\w\u2060])@(?P<kind>channel|here|everyone)\b", re.IGNORECASE)
OPEN_TAIL = re.compile(r"(<[^<>\s]{0,60}|@\w{0,9})$")  # a token still being streamed


def neutralize(text: str) -> str:
    text = SPECIAL.sub(lambda m: f"@{JOINER}{m['kind'].lower()}", text)
    text = SUBTEAM.sub(lambda m: f"@{JOINER}{m['label'] or 'group'}", text)
    return BARE.sub(lambda m: f"@{JOINER}{m['kind']}", text)


def neutralize_blocks(value: Any) -> Any:
    """Every `text` string in a block tree (sections, markdown, buttons, context), defused."""
    if isinstance(value, list):
        return [neutralize_blocks(v) for v in value]
    if isinstance(value, dict):
        return {
            k: neutralize(v) if k == "text" and isinstance(v, str) else neutralize_blocks(v)
            for k, v in value.items()
        }
    return value


def stable_prefix(text: str) -> int:
    """How much of streamed text can be sent now: never half of a `<!…>` or `@here` token."""
    match = OPEN_TAIL.search(text)
    return match.start() if match else len(text)
