"""Check a model's answer against the task contract: JSON, JSON Schema, then the task's validators."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Rule(Protocol):
    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]: ...


class SchemaCheck(Protocol):
    def iter_errors(self, instance: Any) -> Iterable[Any]: ...


class Contract(Protocol):
    """What validation needs of a task (`tasks.Task` is one, and the task loader checks its examples with it)."""

    @property
    def output_validator(self) -> SchemaCheck: ...

    @property
    def validators(self) -> Sequence[Rule]: ...

    def template_for(self, output: dict[str, Any]) -> str | None: ...


def validate_output(task: Contract, text: str, source: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Return the parsed output and the list of problems (empty when it is valid)."""
    try:
        output = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"answer is not complete JSON ({exc.msg.removesuffix(' at')} at character {exc.pos})"]
    if not isinstance(output, dict):
        return None, ["answer must be a JSON object"]
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or 'output'}: {e.message}"
        for e in sorted(task.output_validator.iter_errors(output), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors:
        return output, errors
    for rule in task.validators:
        errors += rule.check(output, source, task.template_for(output))
    return output, errors
