"""A run's steps as the person who clicked "Show steps" may see them: pure rendering and redaction.

Secrets are redacted for everyone. Argument values are shown only to the person who asked: to
anyone else they could reveal that person's private content (a DM quoted into a summary, a
private channel's text), so others see argument names and sizes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.db.models import Run, Step
from bot.logging_setup import TOKEN_PATTERN

SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|authorization|cookie|credential)")
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
REDACTED = "‹redacted›"
MAX_STEPS = 40
MAX_ARGUMENTS = 300
MAX_TEXT = 11_000  # a markdown block holds 12,000 characters


def redact_text(text: str) -> str:
    return BEARER.sub(r"\1 " + REDACTED, TOKEN_PATTERN.sub(REDACTED, text))


def redact_value(value: Any, *, owner: bool) -> Any:
    """Secrets out for everyone; for anyone but the asker, values become their sizes."""
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) else redact_value(v, owner=owner)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_value(v, owner=owner) for v in value] if owner else f"‹{len(value)} items›"
    if isinstance(value, str):
        return redact_text(value) if owner else f"‹{len(value)} chars›"
    return value if owner or isinstance(value, bool) or value is None else "‹a number›"


def shown_arguments(raw: str | None, *, owner: bool) -> str:
    if not raw:
        return ""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return f"‹{len(raw)} chars, not JSON›" if not owner else redact_text(raw)[:MAX_ARGUMENTS]
    text = json.dumps(redact_value(parsed, owner=owner), ensure_ascii=False)
    return text if len(text) <= MAX_ARGUMENTS else text[: MAX_ARGUMENTS - 1] + "…"


def step_line(i: int, step: Step, *, owner: bool) -> str:
    took = f"{step.duration_ms:,.0f} ms"
    if step.kind == "model":
        tokens = f"{step.prompt_tokens:,} in + {step.completion_tokens:,} out tokens"
        line = f"{i}. model `{step.name}`: {tokens}, {took}"
    else:
        args = shown_arguments(step.arguments, owner=owner).replace("`", "'")
        line = f"{i}. {step.kind} `{step.name}`" + (f" `{args}`" if args else "")
        line += f" → {step.output_chars:,} chars, {took}" if not step.error else f", {took}"
    if step.error:
        line += f"\n    ⚠ {redact_text(step.error)[:300]}"
    return line


def steps_text(run: Run, steps: list[Step], *, viewer: str) -> str:
    """Markdown for the ephemeral view: a header line, one line per step, then limits and cost."""
    owner = viewer == run.user_id
    tokens = run.prompt_tokens + run.completion_tokens
    seconds = f"{(run.duration_ms or 0) / 1000:.1f} s"
    cost = f"${run.cost_usd:.4f}" if run.cost_usd is not None else "no price for this model"
    lines = [
        f"**Steps of run {run.id}** ({run.trigger} · {run.status} · {seconds} · "
        f"`{run.model or 'no model'}` · {run.llm_calls} model calls · {tokens:,} tokens · {cost})"
    ]
    for i, step in enumerate(steps[:MAX_STEPS], start=1):
        lines.append(step_line(i, step, owner=owner))
    if len(steps) > MAX_STEPS:
        lines.append(f"… and {len(steps) - MAX_STEPS} more steps")
    if not steps:
        lines.append("(no steps were recorded)")
    if run.status == "limited" and run.error:
        lines.append(f"**Limit hit:** {run.error}")
    elif run.status in ("failed", "refused", "interrupted") and run.error:
        lines.append(f"**Ended:** {redact_text(run.error)[:500]}")
    if not owner:
        lines.append("_Argument values are hidden: someone else asked this._")
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
