"""Refuse JSON Schemas whose constraints llama.cpp's grammar converter would silently drop.

llama-cpp-python's `json_schema_to_gbnf` picks one branch per schema node (see `SchemaConverter.visit`)
and ignores every keyword that branch does not read: `{"type": ["string", "null"], "pattern": ...}`
loses its pattern, `minimum` is never enforced, and so on. This module walks the schema the same way
and reports every keyword the grammar would not enforce, so a task is refused at load time instead
of generating output its schema promised to rule out.
"""

from __future__ import annotations

from typing import Any

# Keywords that constrain nothing and are safe to keep.
ANNOTATIONS = frozenset(
    {"title", "description", "examples", "default", "$comment", "$schema", "$id", "$defs", "definitions", "deprecated"}
)
PRIMITIVE_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
GRAMMAR_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})


class UnenforceableSchema(ValueError):
    def __init__(self, keyword: str, path: str, why: str) -> None:
        super().__init__(f"schema keyword '{keyword}' at {path} cannot be enforced by the llama.cpp grammar: {why}")
        self.keyword = keyword
        self.path = path


def check_schema(schema: dict[str, Any]) -> None:
    """Raise UnenforceableSchema naming the first keyword the grammar would skip (`problems` lists all of them)."""
    found = problems(schema)
    if found:
        raise found[0]


def problems(schema: dict[str, Any]) -> list[UnenforceableSchema]:
    """Every keyword the grammar would skip, in schema order: a task is refused once, with all its reasons."""
    found: list[UnenforceableSchema] = []
    for defs_key in ("$defs", "definitions"):
        for name, sub in schema.get(defs_key, {}).items():
            _check(sub, f"#/{defs_key}/{name}", found)
    _check(schema, "#", found)
    return found


def _check(schema: Any, path: str, found: list[UnenforceableSchema]) -> None:
    if not isinstance(schema, dict):
        if isinstance(schema, bool):
            found.append(UnenforceableSchema(str(schema).lower(), path, "boolean schemas are not supported"))
        else:
            found.append(UnenforceableSchema(type(schema).__name__, path, "a schema must be an object"))
        return
    try:
        used, children = _branch(schema, path)
    except UnenforceableSchema as exc:
        found.append(exc)
        return
    for key in schema:
        if key not in used and key not in ANNOTATIONS:
            found.append(UnenforceableSchema(key, path, _why(key, schema)))
    for child, child_path in children:
        _check(child, child_path, found)


def _branch(schema: dict[str, Any], path: str) -> tuple[set[str], list[tuple[Any, str]]]:
    """Mirror SchemaConverter.visit: which keywords this node's branch reads, and its sub-schemas."""
    kind = schema.get("type")
    if "$ref" in schema:
        if not str(schema["$ref"]).startswith("#/"):
            raise UnenforceableSchema("$ref", path, "only local references ('#/...') are resolved offline")
        return {"$ref"}, []
    for union in ("oneOf", "anyOf"):
        if union in schema:
            subs = schema[union]
            return {union}, [(s, f"{path}/{union}/{i}") for i, s in enumerate(subs)]
    if isinstance(kind, list):
        for t in kind:
            if t not in PRIMITIVE_TYPES:
                raise UnenforceableSchema("type", path, f"unknown type {t!r}")
        return {"type"}, []
    if "const" in schema:
        return {"const", "type"}, []
    if "enum" in schema:
        return {"enum", "type"}, []
    if kind in (None, "object") and (
        "properties" in schema or ("additionalProperties" in schema and schema["additionalProperties"] is not True)
    ):
        children = [(s, f"{path}/properties/{k}") for k, s in schema.get("properties", {}).items()]
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            children.append((extra, f"{path}/additionalProperties"))
        return {"type", "properties", "required", "additionalProperties"}, children
    if "allOf" in schema:
        raise UnenforceableSchema("allOf", path, "only the properties of allOf parts are merged; write one object")
    if kind in (None, "array") and ("items" in schema or "prefixItems" in schema):
        items = schema.get("items") or schema["prefixItems"]
        if isinstance(items, list):
            return {"type", "items", "prefixItems"}, [(s, f"{path}/prefixItems/{i}") for i, s in enumerate(items)]
        used = {"type", "items", "minItems", "maxItems"}
        if "prefixItems" in schema:
            used.add("prefixItems")
        return used, [(items, f"{path}/items")]
    if kind in (None, "string") and "pattern" in schema:
        pattern = schema["pattern"]
        if not (pattern.startswith("^") and pattern.endswith("$")):
            raise UnenforceableSchema("pattern", path, "the grammar needs the pattern anchored with ^ and $")
        return {"type", "pattern"}, []
    if kind in (None, "string") and schema.get("format") in GRAMMAR_FORMATS:
        return {"type", "format"}, []
    if kind == "string" and ("minLength" in schema or "maxLength" in schema):
        return {"type", "minLength", "maxLength"}, []
    if kind is not None and kind not in PRIMITIVE_TYPES:
        raise UnenforceableSchema("type", path, f"unknown type {kind!r}")
    return {"type"}, []


def _why(key: str, schema: dict[str, Any]) -> str:
    if isinstance(schema.get("type"), list):
        return 'a list of types drops every other constraint; use anyOf: [{...constrained...}, {"type": "null"}]'
    if key == "format":
        return f"format {schema['format']!r} is not enforced (only {', '.join(sorted(GRAMMAR_FORMATS))})"
    if key in {"minLength", "maxLength"} and "pattern" in schema:
        return "with a pattern, length limits are dropped; put the length into the pattern"
    return "llama.cpp skips it silently"
