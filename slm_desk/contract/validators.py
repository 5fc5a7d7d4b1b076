"""Deterministic checks a task declares on top of its JSON Schema.

Each validator is a small pydantic model (so a task file with a typo is refused) with a `check`
that returns human-readable errors. These messages are fed back to the model on the retry, so they
say what is wrong in plain words.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slm_desk.contract import templates
from slm_desk.contract.followup import split
from slm_desk.contract.words import content_words, words


class _Validator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        raise NotImplementedError


def _strings(output: dict[str, Any], fields: list[str]) -> list[tuple[str, str]]:
    return [(f, output[f]) for f in fields if isinstance(output.get(f), str)]


class Verbatim(_Validator):
    """Each named string value must be copied from the input, not invented."""

    kind: Literal["verbatim"]
    fields: list[str]
    ignore_case: bool = False
    allow: list[str] = Field(default_factory=list, description="fixed values accepted without being in the input")

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        haystack = source.lower() if self.ignore_case else source
        # what else the model may answer: the task's fixed values when it has some (its schema may forbid null)
        instead = " or ".join(repr(a) for a in self.allow) if self.allow else "null"
        return [
            f"{field} {value!r} does not appear in the input; copy it exactly or use {instead}"
            for field, value in _strings(output, self.fields)
            if value not in self.allow and (value.lower() if self.ignore_case else value) not in haystack
        ]


class Regex(_Validator):
    """A string value must match a regular expression in full (null is allowed)."""

    kind: Literal["regex"]
    field: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:  # refused when the task loads, never an internal error at run time
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from exc
        return value

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        value = output.get(self.field)
        if isinstance(value, str) and not re.fullmatch(self.pattern, value):
            return [f"{self.field} {value!r} does not match the required form {self.pattern}"]
        return []


class NoNewDigits(_Validator):
    """Numbers and IDs in the output must all come from the input."""

    kind: Literal["no_new_digits"]
    fields: list[str]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        known = set(re.findall(r"\d+", source))
        return [
            f"{field} contains {number!r}, which is not in the input"
            for field, value in _strings(output, self.fields)
            for number in re.findall(r"\d+", value)
            if number not in known
        ]


class NonEmpty(_Validator):
    kind: Literal["non_empty"]
    fields: list[str]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        return [f"{f} is empty" for f in self.fields if not str(output.get(f) or "").strip()]


class MaxLength(_Validator):
    """Bound a string field by characters, and optionally relative to the input's length."""

    kind: Literal["max_length"]
    field: str
    max_chars: int = Field(gt=0)
    max_ratio: float | None = Field(None, gt=0, description="at most this many times the input's length")

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        value = output.get(self.field)
        if not isinstance(value, str):
            return []
        limit = self.max_chars
        if self.max_ratio is not None:
            limit = min(limit, max(16, int(len(source) * self.max_ratio)))
        return [f"{self.field} is {len(value)} characters; at most {limit} allowed"] if len(value) > limit else []


class NullIff(_Validator):
    """`field` must be null exactly when `when_field` has one of `equals` (e.g. no span when safe)."""

    kind: Literal["null_iff"]
    field: str
    when_field: str
    equals: list[Any]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        should_be_null = output.get(self.when_field) in self.equals
        is_null = output.get(self.field) is None
        if should_be_null and not is_null:
            return [f"{self.field} must be null when {self.when_field} is {output.get(self.when_field)!r}"]
        if is_null and not should_be_null:
            return [f"{self.field} is required when {self.when_field} is {output.get(self.when_field)!r}"]
        return []


class Grounded(_Validator):
    """Every content word of the value is a word of the input: a rewrite names no fact the text did not."""

    kind: Literal["grounded"]
    fields: list[str]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        known = set(words(source))
        errors = []
        for field, value in _strings(output, self.fields):
            invented = [w for w in dict.fromkeys(content_words(value)) if w not in known]
            if invented:
                errors.append(f"{field} uses {', '.join(map(repr, invented))}, which the input does not contain")
        return errors


class KeepsLastLine(_Validator):
    """Every content word of the input's last line (a follow-up question) is kept in the value."""

    kind: Literal["keeps_last_line"]
    fields: list[str]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        wanted = dict.fromkeys(content_words(split(source)[1]))
        errors = []
        for field, value in _strings(output, self.fields):
            dropped = [w for w in wanted if w not in set(words(value))]
            if dropped:
                errors.append(f"{field} drops {', '.join(map(repr, dropped))} of the last line; keep its words")
        return errors


class TemplateSlots(_Validator):
    """The answer's template (the task's, or the one its key label chooses) has every slot it needs filled: a field
    slot without a fallback may not be empty. Every task with a template checks this, declared or not."""

    kind: Literal["template"]

    def check(self, output: dict[str, Any], source: str, template: str | None) -> list[str]:
        if template is None:
            return []
        return [f"slot {name!r} is not filled: the draft needs it" for name in templates.unfilled(template, output)]


Validator = Annotated[
    Verbatim | Regex | NoNewDigits | NonEmpty | MaxLength | NullIff | Grounded | KeepsLastLine | TemplateSlots,
    Field(discriminator="kind"),
]


def fields_named(validator: _Validator) -> list[str]:
    """Output fields a validator refers to, so a task file naming an unknown field is refused."""
    names = list(getattr(validator, "fields", []))
    names += [getattr(validator, a) for a in ("field", "when_field") if hasattr(validator, a)]
    return names
