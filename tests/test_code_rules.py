"""Rules of the product code that a reader cannot see being broken: read from its syntax tree."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tools.toolkit.errors import (
    ConfigurationError,
    InvariantError,
    SwitchboardError,
    UserFacingError,
    present,
    user_message,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "orchestrators", "tools")


def product_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in product_files()]


def test_no_assert_in_product_code() -> None:
    """`python -O` strips asserts: a check the code relies on must be an explicit raise."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    ]
    assert found == [], f"assert statements in product code: {found}"


def exception_classes() -> list[tuple[str, str]]:
    """(module, class) of every class in the product code named like an exception."""
    found = []
    for path, tree in trees():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                found.append((module, node.name))
    return found


def test_every_project_exception_is_a_switchboard_error() -> None:
    """One family: a boundary tells ours (with words for the user) from a bug by one isinstance.
    The classes are found by name and by base (any subclass of Exception defined here)."""
    names = set(exception_classes())
    for path, tree in trees():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names |= {(module, n.name) for n in tree.body if isinstance(n, ast.ClassDef) and n.bases}
    outside = []
    checked = 0
    for module, name in sorted(names):
        if module.endswith("__main__"):
            continue
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            checked += 1
            if not issubclass(cls, SwitchboardError):
                outside.append(f"{module}.{name}")
    assert checked >= 20  # the scan found the project's exceptions, not nothing
    assert outside == [], f"exceptions outside the SwitchboardError family: {outside}"


def test_user_message_is_apart_from_the_detail() -> None:
    told = UserFacingError("`2x` is not a period")
    assert told.user_message == str(told) == "`2x` is not a period"
    setup = ConfigurationError("MCP_SERVERS_FILE: /etc/x.json is not JSON")
    assert "MCP_SERVERS_FILE" in str(setup) and "MCP_SERVERS_FILE" not in setup.user_message
    assert user_message(KeyError("secret detail")) == user_message(InvariantError("x"))
    assert "secret detail" not in user_message(KeyError("secret detail"))


def test_present_raises_what_python_o_would_not() -> None:
    assert present(0, "a count") == 0  # falsy is still present
    with pytest.raises(InvariantError, match="a stored row's id is missing"):
        present(None, "a stored row's id")


def checker(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a checker of the installed test extras from the project's root."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    """Lint and format are part of the test command: a change that breaks them fails here."""
    lint = checker("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    form = checker("ruff", "format", "--check", ".")
    assert form.returncode == 0, form.stdout[-4000:]


def test_mypy_strict_is_clean() -> None:
    """Types are checked strictly (pyproject's [tool.mypy]); run here, the ~25 CPU-s of a cold
    check overlap the other tests' waits instead of coming before them."""
    typed = checker("mypy", *PACKAGES)
    assert typed.returncode == 0, typed.stdout[-4000:]
