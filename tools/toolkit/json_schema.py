"""A tool's JSON Schema as the model is shown it: `$ref`s inlined, annotation titles dropped.

Every OpenAI-compatible server accepts this plain form. It must stay the schema the tool
published: a *property* called `title`, `default` or `type` is an argument like any other, and
`enum`, `const`, `default` and `examples` are data, copied as they are. Recursive references
(pydantic writes them for self-referring models) are expanded a few levels, then cut to `{}`
with a note; the tool itself still validates against its full schema, so nothing is lost but
detail in what the model reads. Nothing here recurses without a bound.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

REF_DEPTH = 3  # how often one definition may appear inside itself before it is cut
MAX_DEPTH = 48  # nesting of schema nodes shown to the model
MAX_NODES = 5_000  # schema nodes made by inlining; past it every further $ref is cut

# Keywords whose value is a schema, a list of schemas, or a map of names to schemas.
ONE = {
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
}
MANY = {"allOf", "anyOf", "oneOf", "prefixItems"}
NAMED = {"dependentSchemas", "patternProperties", "properties"}
DROPPED = {"title", "$schema", "$id", "$anchor", "$defs", "definitions", "$comment"}


class _Inliner:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.made = 0

    def target(self, ref: str) -> Any:
        """The node a local reference (`#/$defs/X`, `#/definitions/X`, any `#/json/pointer`) names."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = self.root
        for token in filter(None, ref[1:].split("/")):
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def schema(self, node: Any, depth: int, path: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node if isinstance(node, bool) else {}  # true/false are schemas; junk is not
        if depth > MAX_DEPTH:
            return {"description": f"(schema cut: nested more than {MAX_DEPTH} levels deep)"}
        self.made += 1
        out: dict[str, Any] = {}
        note = None
        if "$ref" in node:
            out, note = self.reference(node["$ref"], depth, path)
        for key, value in node.items():
            if key in DROPPED or key == "$ref":
                continue
            if (key in MANY or key == "items") and isinstance(value, list):  # items: draft-07 tuples
                out[key] = [self.schema(v, depth + 1, path) for v in value]
            elif key in ONE:
                out[key] = self.schema(value, depth + 1, path)
            elif key in NAMED and isinstance(value, dict):
                out[key] = {name: self.schema(v, depth + 1, path) for name, v in value.items()}
            elif key == "dependencies" and isinstance(value, dict):  # draft-07: schema or names
                out[key] = {
                    n: self.schema(v, depth + 1, path) if isinstance(v, dict) else _copy(v)
                    for n, v in value.items()
                }
            else:
                out[key] = _copy(value)  # data (enum, default, required, ...) as given
        if note:  # a cut reference: `{}` (anything goes) and a word saying so
            said = out.get("description")
            out["description"] = f"{said} {note}" if isinstance(said, str) and said else note
        return out

    def reference(self, ref: Any, depth: int, path: tuple[str, ...]) -> tuple[dict[str, Any], str | None]:
        """The referenced schema inlined, or ({}, why not)."""
        name = str(ref)[:200]
        found = self.target(ref)
        if found is None:
            return {}, f"(schema not shown: {name} could not be resolved)"
        if path.count(name) >= REF_DEPTH:
            return {}, f"(schema cut: {name} refers to itself; deeper levels are not shown)"
        if self.made >= MAX_NODES:
            return {}, f"(schema cut: {name} not shown, the schema is too large)"
        inlined = self.schema(found, depth + 1, (*path, name))  # +1: a chain of refs is nesting too
        return (inlined if isinstance(inlined, dict) else {}), None


def _copy(value: Any) -> Any:
    """A copy of JSON data, however deeply nested (no recursion, unlike copy.deepcopy)."""
    if not isinstance(value, dict | list):
        return value
    top: Any = {} if isinstance(value, dict) else []
    stack = [(value, top)]
    while stack:
        source, target = stack.pop()
        for key, item in source.items() if isinstance(source, dict) else enumerate(source):
            made = ({} if isinstance(item, dict) else []) if isinstance(item, dict | list) else item
            if isinstance(target, dict):
                target[key] = made
            else:
                target.append(made)
            if isinstance(item, dict | list):
                stack.append((item, made))
    return top


def model_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every local `$ref` inlined (bounded) and no `title` annotations; a new dict."""
    converted = _Inliner(schema).schema(schema, 0, ())
    return converted if isinstance(converted, dict) else {}
