"""The values-mode answer: for a schema whose keys are fixed, the keys and punctuation are fed as forced tokens
and only the values are sampled. Generation (`Engine.generate_values`) and tuning (`tune.answer_tokens`) both
lay an answer out from here, so the two cannot drift apart."""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class ValuesPiece(NamedTuple):
    """One property of a values-mode answer: its key text (fed as forced tokens), the property's schema and the
    delimiter its value is sampled with (the space after ':' and the ',' or '}' after the value belong to it)."""

    key_text: str
    key: str
    schema: dict[str, Any]
    delimiter: str

    def value_text(self, value: Any) -> str:
        """The value as the grammar samples it: what tuning trains on."""
        return " " + json.dumps(value, ensure_ascii=False) + self.delimiter


def values_layout(schema: dict[str, Any]) -> list[ValuesPiece]:
    """The values-mode answer piece by piece: `Engine.generate_values` feeds and samples it, tuning trains on it."""
    properties = list(schema["properties"].items())
    return [
        ValuesPiece(
            ("{" if i == 0 else " ") + json.dumps(key) + ":", key, sub, "}" if i == len(properties) - 1 else ","
        )
        for i, (key, sub) in enumerate(properties)
    ]


def values_only_supported(schema: dict[str, Any]) -> bool:
    """A flat object whose every property is required and nothing else is allowed: its keys are fixed."""
    props = schema.get("properties")
    return bool(
        schema.get("type") == "object"
        and props
        and set(schema.get("required", [])) == set(props)
        and schema.get("additionalProperties") is False
        and "$ref" not in json.dumps(props)
    )
