"""Slack's published payloads (tests/fixtures/slack/), moved into the test world for replay.

Only ids change: team, app, channel, user, event and callback ids are rewritten to the ones the
fake workspace knows (T1, C1, D1, U1, UBOT, ...). java-slack-sdk's samples are field skeletons
whose values are placeholders ("" and 123); `fill()` puts test values into such placeholders only.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"
WORLD = {"T111": "T1", "A111": "A1", "C111": "C1", "D111": "D1", "E111": "E1"}
_events = itertools.count(1)


def load(name: str) -> dict[str, Any]:
    """A fixture by file name, e.g. "events/bolt-python.test_message.message_body.json"."""
    return json.loads((FIXTURES / name).read_text())


def to_test_world(payload: dict[str, Any], ids: dict[str, str] | None = None) -> dict[str, Any]:
    """The payload with its ids rewritten (WORLD plus `ids`); a fresh event_id so replays differ."""
    mapping = WORLD | (ids or {})
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)) + r")\b"
    )
    text = pattern.sub(lambda m: mapping[m.group(1)], json.dumps(payload))
    out = json.loads(text)
    if "event_id" in out:
        out["event_id"] = f"EvReplay{next(_events):06d}"
    return out


def fill(skeleton: Any, values: dict[str, Any]) -> Any:
    """Put `values` into a skeleton's placeholder fields (by key, at any depth where the key is a
    placeholder "" / 123 / false); fields with real content are left alone."""
    if isinstance(skeleton, dict):
        out = {}
        for key, value in skeleton.items():
            if key in values and value in ("", 123, 12345, False, None):
                out[key] = values[key]
            else:
                out[key] = fill(value, values)
        return out
    if isinstance(skeleton, list):
        return [fill(item, values) for item in skeleton]
    return skeleton


def event_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def interactivity_bytes(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def command_bytes(form: dict[str, Any]) -> bytes:
    return urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()}).encode()
