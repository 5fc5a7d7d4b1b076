"""A task's example pool: labelled {"input", "output"} items that teach the task, kept apart from what judges it.

Items come from `slm-desk examples add`, from people's accepted or corrected reviews, and from reviewed
distillation. Every item is checked against the task contract on the way in; `eval` and `calibrate` drop any
gold item that is also in the pool, so no score is measured on what the task learned from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_desk.contract.validation import validate_output
from slm_desk.errors import UsageError

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.store import Store


@dataclass
class Added:
    added: int = 0
    updated: int = 0  # relabelled: the pool had the input with another output
    unchanged: int = 0  # the pool had the input with this very output
    repeated: int = 0  # lines that repeat an earlier line of the file (the same input and output)
    partial: int = 0  # lines that leave a field out: they teach the fields they give (a label without its span)
    skipped: list[str] = field(default_factory=list)  # "FILE:LINE: why", one per bad line
    conflicts: list[str] = field(default_factory=list)  # "FILE:LINE: ...", a later line relabelling an earlier one

    @property
    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} relabelled", f"{self.unchanged} unchanged"]
        if self.repeated:
            parts.append(f"{self.repeated} repeated an earlier line")
        if self.partial:
            parts.append(f"{self.partial} of them give only some fields (they teach those: a label, not a span)")
        parts.append(f"{len(self.skipped)} skipped")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflicting")
        return ", ".join(parts)


def check_item(task: Task, item: Any) -> tuple[str, dict[str, Any]]:
    """The item's input and output when it fits the task contract; UsageError naming the problem otherwise."""
    if not isinstance(item, dict) or not isinstance(item.get("input"), str) or not item["input"].strip():
        raise UsageError('needs a non-empty string "input"')
    output = item.get("output")
    if isinstance(output, str):  # the task file's own format: the output as JSON text
        text = output
    elif isinstance(output, dict):
        text = json.dumps(output, ensure_ascii=False)
    else:
        raise UsageError('needs an "output" object')
    parsed, errors = validate_output(task, text, item["input"])
    if isinstance(parsed, dict) and 0 < len(set(parsed) & set(task.fields)) < len(task.fields):
        errors = _partial_errors(task, parsed, item["input"])  # a line may leave out what it does not know
    if errors or parsed is None:
        raise UsageError("; ".join(errors))
    return item["input"].rstrip(), parsed  # the pool's identity of an input ignores the whitespace that ends it


def partial(task: Task, output: dict[str, Any]) -> bool:
    """Whether a pool item leaves out a field (a prompt labelled without its span): it teaches what it gives."""
    return not set(task.fields) <= set(output)


def _partial_errors(task: Task, output: dict[str, Any], source: str) -> list[str]:
    """The checks a line that leaves fields out can pass: each given field against its own schema, and every
    validator whose fields it all gives. A head learns from it what it gives (a label, not a span)."""
    import jsonschema

    from slm_desk.contract.validators import fields_named

    properties = task.output_schema.get("properties", {})
    errors = [f"{f}: not a field of {task.name}" for f in output if f not in properties]
    for name in (f for f in output if f in properties):
        validator = jsonschema.Draft202012Validator(properties[name])
        errors += [f"{name}: {e.message}" for e in validator.iter_errors(output[name])]
    for rule in task.validators:
        named = fields_named(rule)
        if named and all(f in output for f in named):
            errors += rule.check(output, source, None)
    return errors


def read_file(task: Task, path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The valid (input, output) items of a JSONL file, and "FILE:LINE: why" for each bad line (a line that is
    not UTF-8 too: the rest of the file still counts)."""
    items, skipped, _ = _read(task, path)
    return items, skipped


def _read(task: Task, path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str], list[str]]:
    """Lines are numbered as editors and `wc -l` number them: split at \\n only (a stray \\r inside a line does
    not start a new one)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", 'pass a JSONL file of {"input", "output"}') from exc
    first: dict[str, tuple[int, dict[str, Any]]] = {}
    good: list[tuple[str, dict[str, Any]]] = []
    skipped: list[str] = []
    conflicts: list[str] = []
    for number, data in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        try:
            line = data.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.append(f"{path}:{number}: not UTF-8 text (bad byte at column {exc.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            text, output = check_item(task, json.loads(line))
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{number}: not JSON ({exc.msg})")
            continue
        except UsageError as exc:
            skipped.append(f"{path}:{number}: {exc.message}")
            continue
        if text in first and first[text][1] != output:
            earlier, before = first[text]
            conflicts.append(
                f"{path}:{number}: relabels the input of line {earlier} "
                f"({json.dumps(before, ensure_ascii=False)} -> {json.dumps(output, ensure_ascii=False)});"
                " the later label is kept"
            )
        if text not in first or first[text][1] != output:  # a repeat keeps the line that gave the label first
            first[text] = (number, output)
        good.append((text, output))
    return good, skipped, conflicts


def add_file(store: Store, task: Task, path: Path, source: str = "file") -> Added:
    """Add every valid line of a JSONL file; each bad line is named and skipped, the rest still go in."""
    items, skipped, conflicts = _read(task, path)
    final = dict(items)  # a later line of the same input wins (and was reported as a conflict)
    report = Added(skipped=skipped, conflicts=conflicts, repeated=len(items) - len(final) - len(conflicts))
    report.partial = sum(partial(task, output) for output in final.values())
    known = {item["input"]: item["output"] for item in store.pool(task.name, task.version)}
    for text, output in final.items():
        if text not in known:
            report.added += 1
        elif known[text] == output:
            report.unchanged += 1
        else:
            report.updated += 1
    store.add_to_pool(task.name, task.version, [(t, o, source) for t, o in final.items() if known.get(t) != o])
    return report


def without_pool(store: Store, task: Task, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Gold items minus those the task learned from; and how many were dropped."""
    taught = store.pool_inputs(task.name)
    kept = [item for item in items if item["input"].rstrip() not in taught]
    return kept, len(items) - len(kept)
