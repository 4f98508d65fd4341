"""The MCP_SERVERS file: which MCP tool servers to connect to, and what their tools may do.

Pure parsing (no SDK import), so the settings check can run it at start-up and fail with a
message naming the bad entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from tools.toolkit.errors import ConfigurationError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KEYS = {"command", "env", "cwd", "url", "headers", "tools", "mode", "timeout", "max_output_chars", "trusted"}


class McpConfigError(ConfigurationError, ValueError):
    """The file is unreadable or an entry is malformed; the message names it."""


@dataclass(frozen=True)
class McpServerConfig:
    """One server: launched over stdio (`command`) or reached over streamable HTTP (`url`)."""

    name: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry tokens
    tools: frozenset[str] | None = None  # None: every tool the server lists
    mode: Literal["read", "write"] = "read"
    timeout: float = 30.0
    max_output_chars: int = 8_000
    trusted: bool = False  # may receive data after a run read non-public content, unasked

    @property
    def where(self) -> str:
        """For log lines: the URL or the program, never headers or env values."""
        return self.url or (self.command[0] if self.command else "?")


def _expand(value: Any, where: str, env: Mapping[str, str]) -> str:
    """`${NAME}` takes a secret from the environment, so the file itself can hold none."""
    if not isinstance(value, str):
        raise McpConfigError(f"{where} must be a string")

    def sub(match: re.Match[str]) -> str:
        if match[1] not in env:
            raise McpConfigError(f"{where} refers to ${{{match[1]}}}, which is not set")
        return env[match[1]]

    return ENV_REF.sub(sub, value)


def _strings(raw: Any, where: str, env: Mapping[str, str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise McpConfigError(f"{where} must be an object of strings")
    return {str(k): _expand(v, f"{where}.{k}", env) for k, v in raw.items()}


def parse_server(name: str, raw: Any, env: Mapping[str, str]) -> McpServerConfig:
    where = f"servers.{name}"
    if not NAME.match(name) or "__" in name:
        raise McpConfigError(f"{where}: a server name is 1-30 letters, digits, - or _ (no '__')")
    if not isinstance(raw, dict):
        raise McpConfigError(f"{where} must be an object")
    unknown = set(raw) - KEYS
    if unknown:
        raise McpConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        raise McpConfigError(f"{where}: give either command (stdio) or url (streamable HTTP)")
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command)
    ):
        raise McpConfigError(f"{where}.command must be a non-empty list of strings")
    if url is not None:
        parsed = urlparse(str(url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise McpConfigError(f"{where}.url must be an http(s) URL")
    tools = raw.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
        raise McpConfigError(f"{where}.tools must be a list of tool names (omit it for all)")
    mode = raw.get("mode", "read")
    if mode not in ("read", "write"):
        raise McpConfigError(f'{where}.mode must be "read" or "write", got {mode!r}')
    timeout = raw.get("timeout", 30)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise McpConfigError(f"{where}.timeout must be seconds between 0 and 600")
    cap = raw.get("max_output_chars", 8_000)
    if not isinstance(cap, int) or not 100 <= cap <= 200_000:
        raise McpConfigError(f"{where}.max_output_chars must be a whole number from 100 to 200000")
    trusted = raw.get("trusted", False)
    if not isinstance(trusted, bool):
        raise McpConfigError(f"{where}.trusted must be true or false")
    return McpServerConfig(
        name=name,
        trusted=trusted,
        command=tuple(_expand(c, f"{where}.command", env) for c in command or ()),
        env=_strings(raw.get("env"), f"{where}.env", env),
        cwd=str(raw["cwd"]) if raw.get("cwd") else None,
        url=str(url) if url is not None else None,
        headers=_strings(raw.get("headers"), f"{where}.headers", env),
        tools=frozenset(tools) if tools is not None else None,
        mode=mode,
        timeout=float(timeout),
        max_output_chars=cap,
    )


def load_servers(path: str, env: Mapping[str, str]) -> tuple[McpServerConfig, ...]:
    """Read `{"servers": {name: {...}}}` from a JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise McpConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise McpConfigError(f'{path} must hold {{"servers": {{"<name>": {{...}}}}}}')
    return tuple(parse_server(str(name), raw, env) for name, raw in data["servers"].items())
