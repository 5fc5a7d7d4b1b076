"""Eval sets: JSONL files of {"input": ..., "output": {...}}, and the task's own set growing in the store.

The same format is read by `calibrate` and `eval` and written by `evalset export`, so what the review queue
learns feeds the next calibration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from slm_desk.data.store import Store
from slm_desk.errors import UsageError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", 'pass a JSONL file of {"input", "output"}') from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path}:{number} is not JSON: {exc.msg}", 'each line: {"input": "...", "output": {...}}'
            ) from exc
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("input"), str)
            or not isinstance(item.get("output"), dict)
        ):
            raise UsageError(
                f'{path}:{number} needs a string "input" and an object "output"',
                'each line: {"input": "...", "output": {...}}',
            )
        items.append(item)
    return items


def builtin(task: str) -> Path | None:
    entry = resources.files("slm_desk") / "evalsets" / f"{task}.jsonl"
    return Path(str(entry)) if entry.is_file() else None


def resolve_data(task: str, data: str | None) -> Path:
    if data:
        return Path(data)
    path = builtin(task)
    if path is None:
        raise UsageError(f"task {task!r} has no built-in eval set", "pass --data FILE.jsonl")
    return path


def export(store: Store, task: str, include_teacher: bool = True) -> Iterator[dict[str, Any]]:
    """Labelled examples of a task, newest label per input: gold (a person) and, unless excluded, teacher."""
    labels = ("gold", "teacher") if include_teacher else ("gold",)
    rows = store.labelled(task, labels)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["label"] == "teacher" and latest.get(row["input"], {}).get("label") == "gold":
            continue  # a person's label wins over a model's
        latest[row["input"]] = {
            "input": row["input"],
            "output": json.loads(row["output"]),
            "label": row["label"],
            "source": row["source"],
        }
    yield from latest.values()


def counts(store: Store, task: str) -> dict[str, int]:
    return store.label_counts(task)
