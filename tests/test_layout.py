"""The layout's rules, read from the source: imports point bot -> orchestrators -> tools, each room
knows only what it may (orchestrators neither Slack nor the tables, tools nothing above them), no
module imports itself back through a chain of import-time imports, a package holds at most eight
modules, a file name says one thing wherever it is, and tools/ holds tools at its top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "orchestrators", "tools")
MAY_IMPORT = {"bot": {"bot", "orchestrators", "tools"}, "orchestrators": {"orchestrators", "tools"}}
MAY_IMPORT["tools"] = {"tools"}
OURS = {*PACKAGES, "tests", "bench"}
MAX_MODULES = 8  # per package, subpackages not counted: more and the room holds two concerns
# What a room must not import (ours or third-party), wherever the import is written.
SLACK = ("slack_bolt", "slack_sdk")
TABLES = ("sqlalchemy", "sqlmodel", "alembic", "asyncpg", "aiosqlite")
MAY_NOT_IMPORT = {
    "orchestrators": (*SLACK, *TABLES, "apscheduler", "prometheus_client"),
    # tools may name slack_sdk's errors and client type (read_channel is a Slack tool), not Bolt
    "tools": ("slack_bolt", *TABLES, "apscheduler", "prometheus_client"),
    "bot.db": ("bot.slack", "bot.work", "bot.digests", "bot.console", "orchestrators", "slack_bolt"),
    "bot.work": ("bot.slack", "slack_bolt"),  # Slack's approval prompts are passed in by listeners
    "bot.slack.output": ("bot.slack.answering", "bot.slack.door", "bot.slack.listeners", "bot.work"),
}
# The same file name in two rooms must mean the same thing; none does today.
SAME_NAME_ALLOWED: dict[str, str] = {}


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


# When an import runs: as the module loads, when a function is called, or only for the type checker.
LOAD, CALL, TYPING = "load", "call", "typing"


def imports(module: str, path: Path) -> list[tuple[str, str]]:
    """(imported module, when it runs) for every import of ours, wherever it is written."""
    return [(name, now) for name, now in every_import(module, path) if name.split(".")[0] in OURS]


def every_import(module: str, path: Path) -> list[tuple[str, str]]:
    """(imported name, when it runs) for every import, ours or third-party."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, when: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, when) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((base, when))
                found.extend((f"{base}.{alias.name}", when) for alias in child.names)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), TYPING)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), when)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, TYPING if when == TYPING else CALL)  # runs when called
            else:
                visit(child, when)

    visit(tree, LOAD)
    return found


def graph() -> dict[str, set[str]]:
    """Edges between our modules that run, as a module loads or inside a function (only the type
    checker's imports are left out): `from a import b` counts a.b only if it is a module."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = set()
        for name, now in imports(module, path):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if now != TYPING and name and name != module:
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


def forbidden_imports() -> list[str]:
    return [
        f"{module} imports {name}"
        for module, path in modules().items()
        for room, refused in MAY_NOT_IMPORT.items()
        if module == room or module.startswith(room + ".")
        for name, _ in every_import(module, path)
        if any(name == r or name.startswith(r + ".") for r in refused)
    ]


def test_each_room_knows_only_what_it_may() -> None:
    """Orchestrators know neither Slack nor the tables; tools neither Bolt nor the tables; the
    database room no front door; the work room no Slack room; the Slack output room nothing of
    the rooms that use it."""
    assert forbidden_imports() == []


def packages() -> dict[str, list[str]]:
    """Every package (a folder with __init__.py) and its top-level modules."""
    return {
        module_name(init): sorted(p.name for p in init.parent.glob("*.py") if p.name != "__init__.py")
        for pkg in PACKAGES
        for init in sorted((ROOT / pkg).rglob("__init__.py"))
    }


def test_at_most_eight_modules_per_package() -> None:
    crowded = {name: len(found) for name, found in packages().items() if len(found) > MAX_MODULES}
    assert crowded == {}


def repeated_names(paths: list[Path]) -> dict[str, list[str]]:
    """File names used in more than one room, except the package machinery and the allowed."""
    where: dict[str, list[str]] = {}
    for path in paths:
        if path.name not in ("__init__.py", "__main__.py"):
            where.setdefault(path.name, []).append(str(path.parent.relative_to(ROOT)))
    return {n: rooms for n, rooms in where.items() if len(rooms) > 1 and n not in SAME_NAME_ALLOWED}


def test_a_file_name_says_one_thing() -> None:
    assert repeated_names(list(modules().values())) == {}


def defines_a_tool(path: Path) -> bool:
    def is_tool(d: ast.expr) -> bool:
        d = d.func if isinstance(d, ast.Call) else d
        return isinstance(d, ast.Name) and d.id == "tool"

    return any(
        isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and any(map(is_tool, node.decorator_list))
        for node in ast.parse(path.read_text()).body
    )


def test_the_top_of_tools_holds_tools() -> None:
    """One tool per module at tools/'s top; what tools are built from lives in subpackages."""
    assert [p.name for p in sorted((ROOT / "tools").glob("*.py")) if p.name != "__init__.py"]
    assert [
        p.name
        for p in sorted((ROOT / "tools").glob("*.py"))
        if p.name != "__init__.py" and not defines_a_tool(p)
    ] == []


def test_the_checks_see_what_they_must_refuse(tmp_path: Path) -> None:
    """The walker finds imports inside functions and TYPE_CHECKING, and the cycle finder a loop."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport bot.settings\n"
        "if TYPE_CHECKING:\n    from bot.db import database\n"
        "def f():\n    from tests.fakes import server\n"
    )
    found = imports("tools.probe", source)
    assert ("bot.settings", LOAD) in found and ("bot.db.database", TYPING) in found
    assert ("tests.fakes.server", CALL) in found
    assert {"bot.settings", "bot.db", "tools.toolkit.context"} <= graph()["bot.runtime"]
    assert "bot.db.database" not in graph()["bot.db.queries.runs"]  # for the type checker only
    assert "tools.guards.gate" in graph()["tools.toolkit.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    third = tmp_path / "third.py"
    third.write_text("def f():\n    import sqlalchemy.orm\nfrom slack_sdk.errors import SlackApiError\n")
    assert {"sqlalchemy.orm", "slack_sdk.errors", "slack_sdk.errors.SlackApiError"} <= {
        name for name, _ in every_import("orchestrators.probe", third)
    }
    twice = [
        ROOT / "bot" / "x.py",
        ROOT / "tools" / "x.py",
        ROOT / "bot" / "__init__.py",
        ROOT / "tools" / "__init__.py",
    ]
    assert repeated_names(twice) == {"x.py": ["bot", "tools"]}
    helper = tmp_path / "helper.py"
    helper.write_text("def run():\n    pass\n@tool(timeout=1)\nasync def nested():\n    pass\n")
    assert defines_a_tool(helper) and not defines_a_tool(third)
