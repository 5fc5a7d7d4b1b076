from __future__ import annotations

import json

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from slm_desk.contract.schema_guard import UnenforceableSchema, check_schema
from slm_desk.contract.tasks import load_task, task_names


def obj(**props: dict) -> dict:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        (obj(n={"type": "integer", "minimum": 0}), "minimum"),
        (obj(n={"type": "number", "multipleOf": 5}), "multipleOf"),
        (obj(xs={"type": "array", "items": {"type": "string"}, "uniqueItems": True}), "uniqueItems"),
        (obj(s={"type": ["string", "null"], "pattern": "^INV-[0-9]+$"}), "pattern"),
        (obj(s={"type": ["string", "null"], "maxLength": 5}), "maxLength"),
        (obj(s={"type": "string", "pattern": "^a+$", "maxLength": 5}), "maxLength"),
        (obj(s={"type": "string", "format": "email"}), "format"),
        (obj(s={"type": "string", "pattern": "INV-[0-9]+"}), "pattern"),
        (obj(s={"not": {"type": "null"}}), "not"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties"),
        ({"type": "object", "allOf": [obj(a={"type": "string"})]}, "allOf"),
        (obj(s={"$ref": "https://example.com/schema.json"}), "$ref"),
        ({"$defs": {"n": {"type": "integer", "maximum": 3}}, **obj(n={"$ref": "#/$defs/n"})}, "maximum"),
    ],
)
def test_refuses_keyword_the_grammar_would_skip(schema: dict, keyword: str) -> None:
    with pytest.raises(UnenforceableSchema) as caught:
        check_schema(schema)
    assert caught.value.keyword == keyword
    assert f"'{keyword}'" in str(caught.value)


@pytest.mark.parametrize(
    "schema",
    [
        obj(s={"anyOf": [{"type": "string", "pattern": "^INV-[0-9]+$"}, {"type": "null"}]}),
        obj(s={"type": "string", "minLength": 1, "maxLength": 8, "description": "annotations are fine"}),
        obj(e={"enum": ["a", "b"]}, c={"const": 3}, d={"type": "string", "format": "date"}),
        obj(xs={"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}),
    ],
)
def test_accepts_what_the_grammar_enforces(schema: dict) -> None:
    check_schema(schema)
    assert "root ::=" in json_schema_to_gbnf(json.dumps(schema))


@pytest.mark.parametrize("name", sorted(task_names()))
def test_builtin_task_schemas_are_enforceable(name: str) -> None:
    check_schema(load_task(name).output_schema)


def test_every_unenforceable_keyword_is_named_not_only_the_first() -> None:
    from slm_desk.contract.schema_guard import problems

    schema = obj(
        a={"type": "integer", "minimum": 0, "maximum": 9, "multipleOf": 3},
        b={"type": "string", "format": "email"},
        c={"not": {"type": "null"}},
    )
    assert [(p.path, p.keyword) for p in problems(schema)] == [
        ("#/properties/a", "minimum"),
        ("#/properties/a", "maximum"),
        ("#/properties/a", "multipleOf"),
        ("#/properties/b", "format"),
        ("#/properties/c", "not"),
    ]


def test_a_refused_task_names_its_schema_and_its_dishonest_example_together(tmp_path) -> None:
    from slm_desk.contract.tasks import parse_task
    from slm_desk.errors import TaskError

    text = """
description = "two problems"
instructions = "x"
schema = '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}'
[[examples]]
input = "three"
output = '{"n": "three"}'
"""
    with pytest.raises(TaskError) as refused:
        parse_task(text, "two", "test")
    assert "'minimum'" in str(refused.value) and "example 1" in str(refused.value)
