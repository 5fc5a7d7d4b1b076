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

from slm_desk.errors import UsageError
from slm_desk.validation import validate_output

if TYPE_CHECKING:
    from slm_desk.store import Store
    from slm_desk.tasks import Task


@dataclass
class Added:
    added: int = 0
    updated: int = 0
    skipped: list[str] = field(default_factory=list)  # "FILE:LINE: why", one per bad line


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
    if errors or parsed is None:
        raise UsageError("; ".join(errors))
    return item["input"], parsed


def read_file(task: Task, path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The valid (input, output) items of a JSONL file, and "FILE:LINE: why" for each bad line."""
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", 'pass a JSONL file of {"input", "output"}') from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (bad byte at {exc.start})", "save it as UTF-8") from exc
    good: list[tuple[str, dict[str, Any]]] = []
    skipped: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            good.append(check_item(task, json.loads(line)))
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{number}: not JSON ({exc.msg})")
        except UsageError as exc:
            skipped.append(f"{path}:{number}: {exc.message}")
    return good, skipped


def add_file(store: Store, task: Task, path: Path, source: str = "file") -> Added:
    """Add every valid line of a JSONL file; each bad line is named and skipped, the rest still go in."""
    items, skipped = read_file(task, path)
    report = Added(skipped=skipped)
    known = {item["input"] for item in store.pool(task.name, task.version)}
    report.updated = sum(text in known for text, _ in items)
    store.add_to_pool(task.name, task.version, [(text, output, source) for text, output in items])
    report.added = len({text for text, _ in items} - known)
    return report


def without_pool(store: Store, task: Task, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Gold items minus those the task learned from; and how many were dropped."""
    taught = store.pool_inputs(task.name)
    kept = [item for item in items if item["input"] not in taught]
    return kept, len(items) - len(kept)
