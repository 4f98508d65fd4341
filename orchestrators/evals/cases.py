"""An eval suite: requests as people type them, the equivalent workflow, and what a good answer is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tools.toolkit.errors import ConfigurationError

PATHS = ("llm", "workflow")
CHECK_KEYS = {"tools", "tools_sequence", "contains", "not_contains", "max_cost_usd", "max_latency_ms"}


class CaseError(ConfigurationError, ValueError):
    """The suite file is malformed; the message names the case and the key."""


@dataclass(frozen=True)
class Checks:
    tools: tuple[str, ...] = ()  # each of these ran, in any order
    tools_sequence: tuple[str, ...] = ()  # these ran in this order (others may run between)
    contains: tuple[str, ...] = ()  # the answer contains each (case-insensitive)
    not_contains: tuple[str, ...] = ()
    max_cost_usd: float | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class Case:
    name: str
    request: str  # what a person would type to the bot
    workflow: str | None = None  # the equivalent command line, e.g. "/weather Karachi"
    checks: dict[str, Checks] = field(default_factory=dict)  # per path
    skip: str | None = None  # why this case is not run here (e.g. it needs a Slack workspace)

    def paths(self, wanted: tuple[str, ...]) -> list[str]:
        return [p for p in wanted if p == "llm" or (p == "workflow" and self.workflow)]


def _strings(name: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CaseError(f"case {name!r}: {key} must be a string or a list of strings")
    return tuple(value)


def _checks(name: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CaseError(f"case {name!r}: checks must be a mapping")
    unknown = set(raw) - CHECK_KEYS
    if unknown:
        raise CaseError(f"case {name!r}: unknown check {sorted(unknown)[0]!r} (known: {sorted(CHECK_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("max_"):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise CaseError(f"case {name!r}: {key} must be a number")
            out[key] = float(value)
        else:
            out[key] = _strings(name, key, value)
    return out


def parse_cases(text: str) -> list[Case]:
    """Cases from YAML: a list, or a mapping with `cases:`. `checks` apply to both paths;
    `llm_checks` / `workflow_checks` add to or replace them for one path."""
    data = yaml.safe_load(text)
    if isinstance(data, dict):
        data = data.get("cases")
    if not isinstance(data, list) or not data:
        raise CaseError("the suite must be a non-empty list of cases (or `cases:` with one)")
    cases: list[Case] = []
    for i, raw in enumerate(data, 1):
        if not isinstance(raw, dict):
            raise CaseError(f"case {i} must be a mapping")
        name = str(raw.get("name") or f"case {i}")
        request = raw.get("request")
        if not isinstance(request, str) or not request.strip():
            raise CaseError(f"case {name!r}: request is required")
        workflow = raw.get("workflow")
        if workflow is not None and (not isinstance(workflow, str) or not workflow.startswith("/")):
            raise CaseError(f"case {name!r}: workflow must be a command line such as '/weather Karachi'")
        common = _checks(name, raw.get("checks"))
        checks = {p: Checks(**{**common, **_checks(name, raw.get(f"{p}_checks"))}) for p in PATHS}
        if any(c.name == name for c in cases):
            raise CaseError(f"two cases are called {name!r}")
        skip = raw.get("skip")
        cases.append(Case(name, request.strip(), workflow, checks, str(skip) if skip else None))
    return cases


def case_yaml(cases: list[dict[str, Any]]) -> str:
    """A suite file for `cases` (plain dicts in the file's shape): what insights proposes."""
    text: str = yaml.safe_dump({"cases": cases}, sort_keys=False, allow_unicode=True, width=100)
    return text
