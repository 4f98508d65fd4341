"""The layout's two rules, read from the source: imports point bot -> orchestrators -> tools, and
no module imports itself back through a chain of import-time imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "orchestrators", "tools")
MAY_IMPORT = {"bot": {"bot", "orchestrators", "tools"}, "orchestrators": {"orchestrators", "tools"}}
MAY_IMPORT["tools"] = {"tools"}
OURS = {*PACKAGES, "tests", "bench"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, runs at import time) for every import of ours, wherever it is written."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, at_import_time: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, at_import_time) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((base, at_import_time))
                found.extend((f"{base}.{alias.name}", at_import_time) for alias in child.names)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), at_import_time)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)  # runs when called, not when imported
            else:
                visit(child, at_import_time)

    visit(tree, True)
    return [(name, now) for name, now in found if name.split(".")[0] in OURS]


def graph() -> dict[str, set[str]]:
    """Import-time edges between our modules (`from a import b` counts a.b only if it is a module)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = set()
        for name, now in imports(module, path):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if now and name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def test_imports_point_from_bot_to_orchestrators_to_tools() -> None:
    wrong = [
        f"{module} imports {name}"
        for module, path in modules().items()
        for name, _ in imports(module, path)
        if name.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    ]
    assert wrong == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_what_they_must_refuse(tmp_path: Path) -> None:
    """The walker finds imports inside functions and TYPE_CHECKING, and the cycle finder a loop."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport bot.settings\n"
        "if TYPE_CHECKING:\n    from bot.db import engine\n"
        "def f():\n    from tests.fakes import server\n"
    )
    found = imports("tools.probe", source)
    assert ("bot.settings", True) in found and ("bot.db.engine", False) in found
    assert ("tests.fakes.server", False) in found
    assert {"bot.settings", "bot.db", "tools.context"} <= graph()["bot.runtime"]
    assert "bot.db.runs" not in graph()["bot.db.engine"]  # imported inside a function: not a cycle
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
