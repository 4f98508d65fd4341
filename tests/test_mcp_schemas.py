"""Issue 23 (6): MCP tool schemas reach the model as their servers published them.

Fixtures are tool lists of real servers (tests/fixtures/mcp/SOURCES.md says where each comes
from); the recursive schema is pydantic's own output for a self-referring model.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from tests.conftest import MakeBot
from tests.fakes.openai_server import Reply, ToolCall
from tests.fakes.slack_requests import mention
from tools.mcp_servers.mcp_config import McpServerConfig
from tools.mcp_servers.mcp_tools import McpLink, McpTool, model_schema
from tools.toolkit.json_schema import MAX_DEPTH, REF_DEPTH, model_parameters
from tools.toolkit.registry import ToolError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mcp"
SCHEMA_NODES = {"items", "additionalProperties", "not", "if", "then", "else", "contains"}


def published(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def published_tools() -> list[dict[str, Any]]:
    return [t for name in ("github", "filesystem", "fetch") for t in published(name)]


class Step(BaseModel):
    """One step of a plan; a step may have steps of its own."""

    title: str
    done: bool = False
    substeps: list[Step] = []


class PlanArgs(BaseModel):
    plan: Step
    owner: str


def recursive_tool() -> dict[str, Any]:
    """A tool whose inputSchema pydantic generated from a recursive model ($defs and a self-$ref)."""
    schema = PlanArgs.model_json_schema()
    assert schema["$defs"]["Step"]["properties"]["substeps"]["items"] == {"$ref": "#/$defs/Step"}
    return {"name": "save_plan", "description": "Save a plan of nested steps.", "inputSchema": schema}


def annotation_titles(node: Any, where: str = "") -> list[str]:
    """Where a schema node still carries a `title` annotation (never a property's name)."""
    found: list[str] = []
    if isinstance(node, dict):
        if "title" in node:
            found.append(where or "<root>")
        for name, sub in (node.get("properties") or {}).items():
            found += annotation_titles(sub, f"{where}/properties/{name}")
        for key in SCHEMA_NODES & set(node):
            found += annotation_titles(node[key], f"{where}/{key}")
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(node.get(key) or []):
                found += annotation_titles(sub, f"{where}/{key}/{i}")
    return found


def depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((depth(v) for v in node), default=0)
    return 0


@pytest.mark.parametrize("tool", published_tools(), ids=lambda t: t["name"])
def test_published_schemas_keep_every_argument(tool: dict[str, Any]) -> None:
    given = tool["inputSchema"]
    shown = model_schema(given)
    assert set(shown["properties"]) == set(given["properties"])  # `title`, `type` included
    assert set(shown.get("required", [])) <= set(shown["properties"])
    assert shown.get("required", []) == given.get("required", [])
    assert annotation_titles(shown) == [] and "$schema" not in shown
    for name, prop in given["properties"].items():
        assert shown["properties"][name]["type" if "type" in prop else "anyOf"] == prop.get(
            "type", prop.get("anyOf")
        )
        if "description" in prop:
            assert shown["properties"][name]["description"] == prop["description"]
        if "default" in prop:
            assert shown["properties"][name]["default"] == prop["default"]


def test_github_create_issue_keeps_its_title_argument() -> None:
    (issue,) = [t for t in published("github") if t["name"] == "create_issue"]
    shown = model_schema(issue["inputSchema"])
    assert shown["properties"]["title"] == {"description": "Issue title", "type": "string"}
    assert shown["required"] == ["owner", "repo", "title"]
    (write,) = [t for t in published("github") if t["name"] == "issue_write"]
    assert model_schema(write["inputSchema"])["properties"]["type"]["anyOf"][0] == {
        "minLength": 1,
        "type": "string",
    }


def test_keyword_names_are_arguments_and_data_is_kept_as_given() -> None:
    schema = {
        "type": "object",
        "title": "Args",
        "properties": {
            name: {"type": "string", "title": name.upper()}
            for name in ("title", "default", "description", "type", "$ref", "properties", "enum")
        }
        | {
            "style": {
                "type": "object",
                "default": {"title": "kept: a default is data", "$ref": "#/not/a/ref"},
                "enum": [{"title": "kept too"}],
                "properties": {"title": {"$ref": "#/$defs/Name"}},
            },
            "pair": {"type": "array", "items": [{"$ref": "#/$defs/Name"}, {"type": "integer", "title": "N"}]},
        },
        "required": ["title", "$ref"],
        "$defs": {"Name": {"type": "string", "title": "Name", "description": "a name"}},
    }
    shown = model_parameters(schema)
    assert set(shown["properties"]) == set(schema["properties"]) and shown["required"] == ["title", "$ref"]
    assert shown["properties"]["$ref"] == {"type": "string"}
    style = shown["properties"]["style"]
    assert style["default"] == {"title": "kept: a default is data", "$ref": "#/not/a/ref"}
    assert style["enum"] == [{"title": "kept too"}]
    assert style["properties"]["title"] == {"type": "string", "description": "a name"}
    name, number = shown["properties"]["pair"]["items"]
    assert name == {"type": "string", "description": "a name"} and number == {"type": "integer"}
    assert "title" not in shown and "$defs" not in shown
    assert schema["properties"]["title"]["title"] == "TITLE"  # the input is not changed


def test_recursive_refs_are_cut_after_a_few_levels() -> None:
    shown = model_schema(recursive_tool()["inputSchema"])
    assert set(shown["required"]) <= set(shown["properties"]) == {"plan", "owner"}
    level, seen = shown["properties"]["plan"], 0
    while "properties" in level:
        assert level["properties"]["title"] == {"type": "string"}  # Step's own `title` argument
        seen += 1
        level = level["properties"]["substeps"]["items"]
    assert seen == REF_DEPTH and set(level) == {"description"} and "refers to itself" in level["description"]
    mutual = {
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/A"}, "again": {"$ref": "#/properties/a"}},
        "definitions": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/B"}}},
            "B": {"type": "array", "items": {"$ref": "#/definitions/A"}},
        },
    }
    cut = model_schema(mutual)
    assert depth(cut) < 40 and "refers to itself" in json.dumps(cut)
    assert cut["properties"]["again"]["properties"]["b"]["type"] == "array"  # a JSON-pointer ref


def test_unknown_and_external_refs_become_notes() -> None:
    shown = model_parameters(
        {
            "type": "object",
            "properties": {
                "missing": {"$ref": "#/$defs/Nope", "description": "kept"},
                "remote": {"$ref": "https://example.com/schemas/thing.json"},
                "odd": {"$ref": 7},
            },
        }
    )
    missing = shown["properties"]["missing"]
    assert set(missing) == {"description"} and missing["description"].startswith("kept (schema not shown")
    assert "could not be resolved" in shown["properties"]["remote"]["description"]
    assert "could not be resolved" in shown["properties"]["odd"]["description"]


def test_pathological_schemas_never_raise() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(20_000):  # far past Python's recursion limit
        deep = {"type": "array", "items": deep}
    shown = model_schema({"type": "object", "properties": {"x": deep}})
    assert depth(shown) < 2 * MAX_DEPTH + 10 and "nested more than" in json.dumps(shown)
    chain: dict[str, Any] = {"type": "object", "properties": {"x": {"$ref": "#/$defs/C0"}}, "$defs": {}}
    for i in range(5_000):  # a chain of references, each only pointing at the next
        chain["$defs"][f"C{i}"] = {"$ref": f"#/$defs/C{i + 1}"}
    assert "nested more than" in json.dumps(model_schema(chain))
    data: list[Any] = []
    for _ in range(20_000):
        data = [data]
    enum = model_schema({"type": "object", "properties": {"x": {"enum": [data]}}})["properties"]["x"]["enum"]
    copied, levels = enum[0], 0
    while copied:  # data is copied as given, without recursion (== would recurse, so walk it)
        assert copied is not data and len(copied) == 1
        copied, data, levels = copied[0], data[0], levels + 1
    assert levels == 20_000
    fan = {"type": "object", "properties": {"x": {"$ref": "#/$defs/D0"}}, "$defs": {}}
    for i in range(40):  # each definition uses the next one twice: 2**40 nodes if fully inlined
        twice = {"$ref": f"#/$defs/D{i + 1}"}
        fan["$defs"][f"D{i}"] = {"type": "object", "properties": {"l": twice, "r": twice}}
    fan["$defs"]["D40"] = {"type": "string"}
    assert len(json.dumps(model_schema(fan))) < 2_000_000


def test_a_tool_with_a_recursive_schema_validates_with_its_full_schema() -> None:
    remote = SimpleNamespace(**recursive_tool(), input_schema=recursive_tool()["inputSchema"])
    link = McpLink(McpServerConfig(name="plans", command=("x",)))
    tool = McpTool(link, remote)
    nested: dict[str, Any] = {"title": "leaf"}
    for i in range(10):  # deeper than the model is shown
        nested = {"title": f"level {i}", "substeps": [nested]}
    assert tool.validate({"plan": nested, "owner": "o"})["plan"] == nested
    bad = json.loads(json.dumps(nested).replace('"leaf"', "42"))
    with pytest.raises(ToolError, match="42 is not of type 'string'"):
        tool.validate({"plan": bad, "owner": "o"})


def write_tools(tmp_path: Path, tools: list[dict[str, Any]]) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools))
    return path


def published_server(tmp_path: Path, name: str, tools: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
    """A servers-file entry launching tests/fakes/published_mcp_server.py with `tools`."""
    tools_file = tmp_path / f"{name}-tools.json"
    tools_file.write_text(json.dumps(tools))
    state = tmp_path / f"{name}-state"
    command = [sys.executable, "-m", "tests.fakes.published_mcp_server", str(tools_file), str(state), *extra]
    return {"command": command, "cwd": str(ROOT), "mode": "read", "timeout": 60}


def servers_file(tmp_path: Path, servers: dict[str, Any]) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"servers": servers}))
    return str(path)


def calls(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}-state" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def too_deep_tool() -> dict[str, Any]:
    """Not a published schema: one nested deep enough that jsonschema's own check of it raises
    RecursionError (it still crosses the wire: the SDK's JSON parser allows this depth)."""
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(150):
        deep = {"type": "array", "items": deep}
    return {"name": "too_deep", "inputSchema": {"type": "object", "properties": {"x": deep}}}


async def test_real_schemas_are_offered_accepted_and_callable(
    slack, llm, tmp_path, caplog, make_bot: MakeBot
) -> None:
    caplog.set_level(logging.WARNING, logger="tools.mcp_servers.mcp_tools")
    tools = [*published_tools(), recursive_tool()]
    servers = {"pub": published_server(tmp_path, "pub", [*tools, too_deep_tool()])}
    harness = await make_bot(MCP_SERVERS=servers_file(tmp_path, servers))
    assert await harness.rt.mcp.ready(120), harness.rt.mcp.status()
    issue = {"owner": "acme", "repo": "bot", "title": "Printer on fire"}
    plan = {"title": "ship", "substeps": [{"title": "test", "substeps": [{"title": "fix"}]}]}
    llm.script(
        Reply(
            tool_calls=[
                ToolCall("pub__create_issue", issue),
                ToolCall("pub__save_plan", {"plan": plan, "owner": "acme"}),
            ]
        ),
        Reply(content="Filed the issue and saved the plan."),
    )
    await harness.event(mention("<@UBOT> file it", ts="300.1"))
    await harness.idle()
    assert llm.schema_errors == [] and len(llm.requests) == 2  # the model server took both requests
    offered = {t["function"]["name"]: t["function"]["parameters"] for t in llm.requests[0]["tools"]}
    assert {f"pub__{t['name']}" for t in tools} <= set(offered)  # every tool, the recursive one too
    assert "pub__too_deep" not in offered and "tool too_deep skipped: RecursionError" in caplog.text
    for name, parameters in offered.items():
        assert set(parameters.get("required", [])) <= set(parameters.get("properties", {})), name
    assert offered["pub__create_issue"]["properties"]["title"]["type"] == "string"
    assert calls(tmp_path, "pub") == [
        {"name": "create_issue", "arguments": issue},
        {"name": "save_plan", "arguments": {"plan": plan, "owner": "acme"}},
    ]
    results = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert "create_issue done" in results[0] and "save_plan done" in results[1]
    assert "saved the plan" in str(slack.posted(channel="C1"))
