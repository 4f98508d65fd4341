"""A run's steps as the person who clicked "Show steps" may see them: pure rendering and redaction.

Secrets are redacted for everyone. Argument values are shown to the person who asked, and to
others only when they may read everything the run read that not everyone may (the run records
its non-public sources; the listener checks them): otherwise they could reveal a DM quoted into a
summary or a private channel's text, and others see argument names and sizes. Error texts echo
argument values, so only the asker reads them; others see what kind of failure it was. A tool
step's name is shown only when it names one of our tools or a connected MCP server's: the model
can call a tool by any name, and that name is its text. Everything outside text passes the one
clean-up (`neutralize`), so nothing that reaches Slack is live markup.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
from collections.abc import Collection
from typing import Any

import orchestrators
import tools
from bot.db.models import Run, Step
from bot.logging_setup import TOKEN_PATTERN
from bot.slack.output.safe_text import neutralize
from tools.toolkit.registry import Tool

SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|authorization|cookie|credential)")
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
REDACTED = "‹redacted›"
MAX_STEPS = 40
MAX_ARGUMENTS = 300
MAX_TEXT = 11_000  # a markdown block holds 12,000 characters
UNKNOWN_TOOL = "an unknown tool"
# Slack's control sequences: <!here>, <!subteam^S1|@team>, <@U1>, <#C1|general>, <https://x|label>.
MARKUP = re.compile(r"<([!@#]|(?=[a-z][a-z0-9+.-]*:))([^<>|]*)(?:\|([^<>]*))?>", re.IGNORECASE)
BROADCAST_WORD = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
# What kind of failure an error text is, for those who may not read the text itself.
ERROR_KINDS = (
    (
        re.compile(r"invalid arguments|The arguments for .* (are not valid JSON|must be a JSON object)"),
        "invalid arguments",
    ),
    (re.compile(r"takes \d+ arguments"), "invalid arguments"),
    (re.compile(r"There is no tool called"), "no such tool"),
    (re.compile(r"timed out"), "timed out"),
    (re.compile(r"^(denied|expired|unavailable)\b"), "not approved"),  # an approval's decision
)


def error_kind(error: str) -> str:
    """'failed: invalid arguments' and the like: what went wrong, without the values it echoed."""
    for pattern, kind in ERROR_KINDS:
        if pattern.search(error):
            return f"failed: {kind}"
    return "failed"


@functools.cache
def own_tool_names() -> frozenset[str]:
    """Every tool our code defines: the registry's and those workflows call directly (geocode).

    Found by walking our two tool-defining packages, so a new tool file needs no list to join.
    """
    names: set[str] = set()
    for package in (tools, orchestrators):
        for found in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(found.name)
            names.update(value.name for value in vars(module).values() if isinstance(value, Tool))
    return frozenset(names)


def redact_text(text: str) -> str:
    return BEARER.sub(r"\1 " + REDACTED, TOKEN_PATTERN.sub(REDACTED, text))


def redact_value(value: Any, *, owner: bool) -> Any:
    """Secrets out for everyone; for anyone but the asker, values become their sizes (a nested
    object's keys are values too: the model chose them)."""
    if isinstance(value, dict):
        if not owner:
            return f"‹{len(value)} keys›"
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) else redact_value(v, owner=owner)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v, owner=owner) for v in value] if owner else f"‹{len(value)} items›"
    if isinstance(value, str):
        return redact_text(value) if owner else f"‹{len(value)} chars›"
    return value if owner or isinstance(value, bool) or value is None else "‹a number›"


def shown_arguments(raw: str | None, *, owner: bool, named: bool, cleared: bool = False) -> str:
    """`named`: the top-level keys are a known tool's parameter names, so others may see them;
    `cleared`: the viewer may read what the run read, so a known tool's values too."""
    if not raw:
        return ""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return f"‹{len(raw)} chars, not JSON›" if not owner else redact_text(raw)[:MAX_ARGUMENTS]
    if owner or (cleared and named):
        shown = redact_value(parsed, owner=True)
    elif named and isinstance(parsed, dict):
        shown = {k: redact_value(v, owner=False) for k, v in parsed.items()}
    else:
        return f"‹{len(raw)} chars›"
    text = json.dumps(shown, ensure_ascii=False)
    return text if len(text) <= MAX_ARGUMENTS else text[: MAX_ARGUMENTS - 1] + "…"


def _code(text: str) -> str:
    return "`" + neutralize(text).replace("`", "'") + "`"


def step_line(i: int, step: Step, *, owner: bool, known_tools: Collection[str], cleared: bool = False) -> str:
    took = f"{step.duration_ms:,.0f} ms"
    if step.kind == "model":
        tokens = f"{step.prompt_tokens:,} in + {step.completion_tokens:,} out tokens"
        line = f"{i}. model {_code(step.name)}: {tokens}, {took}"
    else:
        known = step.kind != "tool" or step.name in known_tools
        # Arguments a tool refused may have any keys; those it took are its parameters.
        args = shown_arguments(step.arguments, owner=owner, named=known and not step.error, cleared=cleared)
        name = _code(step.name) if known else UNKNOWN_TOOL
        line = f"{i}. {step.kind} {name}" + (f" {_code(args)}" if args else "")
        line += f" → {step.output_chars:,} chars, {took}" if not step.error else f", {took}"
    if step.error:
        shown = neutralize(redact_text(step.error)[:300]) if owner else error_kind(step.error)
        line += f"\n    ⚠ {shown}"
    return line


def steps_text(
    run: Run, steps: list[Step], *, viewer: str, known_tools: Collection[str], cleared: bool = False
) -> str:
    """Markdown for the ephemeral view: a header line, one line per step, then limits and cost.

    `known_tools`: the names of the tools a step may be named by (ours and connected MCP tools');
    `cleared`: the viewer may read every non-public source the run read (the audience rule).
    """
    owner = viewer == run.user_id
    tokens = run.prompt_tokens + run.completion_tokens
    seconds = f"{(run.duration_ms or 0) / 1000:.1f} s"
    cost = f"${run.cost_usd:.4f}" if run.cost_usd is not None else "no price for this model"
    lines = [
        f"**Steps of run {run.id}** ({run.trigger} · {run.status} · {seconds} · "
        f"{_code(run.model or 'no model')} · {run.llm_calls} model calls · {tokens:,} tokens · {cost})"
    ]
    for i, step in enumerate(steps[:MAX_STEPS], start=1):
        lines.append(step_line(i, step, owner=owner, known_tools=known_tools, cleared=cleared))
    if len(steps) > MAX_STEPS:
        lines.append(f"… and {len(steps) - MAX_STEPS} more steps")
    if not steps:
        lines.append("(no steps were recorded)")
    if run.status == "limited" and run.error:
        lines.append(f"**Limit hit:** {neutralize(run.error)}")
    elif run.status in ("failed", "refused", "interrupted") and run.error:
        lines.append(f"**Ended:** {neutralize(redact_text(run.error)[:500]) if owner else run.status}")
    if not owner:
        hidden = "Error details are" if cleared else "Argument values and error details are"
        lines.append(f"_{hidden} hidden: someone else asked this._")
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
