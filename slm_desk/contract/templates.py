"""Drafting from strict templates: the draft is code's, the answer only chooses and copies.

A task holds one template (`template = "..."`) or a set keyed by one of its label fields (`[templates.intent]`, one
text per label: a support team's macros). A slot `{name}` is filled from the answer's field of that name (a label,
or a span copied from the input) or from a constant (`[constants]` in the task file, overridden by `[constants]` in
config.toml: the company's phone number, set once). `{name|fallback}` gives the text to use when the field is null
(`{order_id|your order}`); a slot with no fallback and no value makes the answer invalid, so the draft is never
rendered with a hole or an invented value. `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SLOT = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)(?:\|([^{}]*))?\}")


@dataclass(frozen=True)
class Slot:
    name: str
    fallback: str | None


def slots(template: str) -> list[Slot]:
    """The slots of a template, in order (a slot used twice is listed twice)."""
    return [Slot(m.group(1), m.group(2)) for m in SLOT.finditer(template) if m.group(1)]


def unfilled(template: str, output: Mapping[str, Any]) -> list[str]:
    """The answer's fields the template needs and the answer leaves empty, where the template gives no fallback."""
    return list(
        dict.fromkeys(
            s.name
            for s in slots(template)
            if s.name in output and s.fallback is None and not str(output[s.name] or "").strip()
        )
    )


def render(template: str, output: Mapping[str, Any], constants: Mapping[str, str]) -> str | None:
    """The template with every slot filled, or None when a slot cannot be (no value, no fallback, unknown name)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        name, fallback = match.group(1), match.group(2)
        if name in output:
            value = output[name]
            if value is not None and str(value).strip():
                return str(value)
            if fallback is not None:
                return fallback
        elif name in constants:
            return constants[name]
        missing = True
        return ""

    text = SLOT.sub(fill, template)
    return None if missing else text


def problems(template: str, fields: list[str], constants: Mapping[str, str], where: str = "template") -> list[str]:
    """Why a template could never render: a slot that names neither a field of the answer nor a constant."""
    return [
        f"{where} slot {{{s.name}}} is neither a schema property nor a constant ([constants] in the task file)"
        for s in slots(template)
        if s.name not in fields and s.name not in constants
    ]
