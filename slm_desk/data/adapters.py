"""Fine-tuned LoRA adapters: where they live, what they were trained for, and whether one fits a model.

An adapter is a GGUF LoRA file (what llama.cpp loads) that describes itself: besides llama.cpp's own
`adapter.*` keys it carries `slm_desk.*` keys naming the task, the task version and the sha256 of the exact base
file it was trained on. One adapter per (task, base model), found by path, so `run`, `eval`, `bench` and the app
pick it up without configuration. This module never imports torch: only `slm-desk tune` (tune.py) writes them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_desk import locations
from slm_desk.contract.tasks import Task
from slm_desk.data.catalog import ModelRef, installed_record
from slm_desk.data.download import sha256_of
from slm_desk.data.gguf_header import NotGGUF, read_file_layout, read_tensors
from slm_desk.errors import UsageError

KEY = "slm_desk."
FILE_SUFFIX = ".lora.gguf"
TUNED = "+lora"  # a tuned model's id is its base's plus this: results and calibration profiles keep them apart


class AdapterMismatch(UsageError):
    """An adapter exists for this task and model but was trained for another base file or task version."""


@dataclass(frozen=True)
class Adapter:
    path: Path
    task: str
    task_version: int
    base_model: str
    base_sha256: str
    rank: int
    alpha: float
    examples: int
    created_at: str
    report: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def folder() -> Path:
    path = locations.data_dir() / "adapters"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def path_for(task: str, model_id: str) -> Path:
    return folder() / f"{task}--{model_id}{FILE_SUFFIX}"


def read(path: Path) -> Adapter:
    """The adapter's own description, from its GGUF header."""
    try:
        meta, layout = read_file_layout(path)
    except (OSError, NotGGUF, ValueError) as exc:
        raise UsageError(f"{path} is not a readable adapter ({exc})", f"remove it: rm {path}") from exc
    if meta.get("general.type") != "adapter" or f"{KEY}task" not in meta:
        raise UsageError(f"{path} is not an slm-desk LoRA adapter", f"remove it: rm {path}")
    if layout is not None and layout.cut_short:  # llama.cpp would read past the end (a segfault, no message)
        raise UsageError(
            f"{path} is cut short: its tensors need {layout.needed_bytes:,} bytes, the file has {layout.file_bytes:,}",
            f"tune again, or remove it: slm-desk adapters rm {meta[f'{KEY}task']}",
        )
    return Adapter(
        path=path,
        task=str(meta[f"{KEY}task"]),
        task_version=int(meta[f"{KEY}task_version"]),
        base_model=str(meta[f"{KEY}base_model"]),
        base_sha256=str(meta[f"{KEY}base_sha256"]),
        rank=int(meta.get(f"{KEY}rank", 0)),
        alpha=float(meta.get("adapter.lora.alpha", 0.0)),
        examples=int(meta.get(f"{KEY}examples", 0)),
        created_at=str(meta.get(f"{KEY}created_at", "")),
        report=json.loads(meta.get(f"{KEY}report", "{}")),
    )


def all_adapters() -> list[Adapter]:
    return [a for a in scan() if isinstance(a, Adapter)]


def scan() -> list[Adapter | UsageError]:
    """Every file in the adapters folder: the adapter, or why it cannot be one (listed, never loaded)."""
    found: list[Adapter | UsageError] = []
    for path in sorted(folder().glob(f"*{FILE_SUFFIX}")):
        try:
            found.append(read(path))
        except UsageError as exc:
            found.append(exc)
    return found


_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key not in _hashes:
            _hashes[key] = sha256_of(path)
        return _hashes[key]


def base_sha256(model: ModelRef) -> str:
    """The verified hash a pull recorded, else the file's own."""
    record = installed_record(model.id) or {}
    recorded = record.get("sha256")
    return recorded if isinstance(recorded, str) and len(recorded) == 64 else file_sha256(model.path)


def for_task(task: Task, model: ModelRef) -> Adapter | None:
    """The adapter that `run` should load for this task and model: None when there is none; refused when the
    one there was trained on another base file or another version of the task (it would answer wrongly)."""
    path = path_for(task.name, model.id)
    if not path.is_file():
        return None
    try:
        adapter = read(path)
    except UsageError as exc:
        raise AdapterMismatch(exc.message, exc.hint + "; or pass --no-adapter") from exc
    fixes = (
        f"tune again (`slm-desk tune {task.name} --model {model.id}`), pass --no-adapter, "
        f"or remove it (`slm-desk adapters rm {task.name} --model {model.id}`)"
    )
    actual = base_sha256(model)
    if adapter.base_sha256 != actual:
        raise AdapterMismatch(
            f"the adapter for {task.name} was trained on another file than {model.path.name} "
            f"(base sha256 {adapter.base_sha256[:12]}…, this file {actual[:12]}…)",
            fixes,
        )
    if adapter.task_version != task.version:
        raise AdapterMismatch(
            f"the adapter for {task.name} was trained on task version {adapter.task_version}; "
            f"the task is now version {task.version}",
            fixes,
        )
    misfit = _misfit(path, model.path)
    if misfit:  # llama.cpp would crash on it (a segfault, no message): refused here, with the tensor named
        raise AdapterMismatch(f"the adapter for {task.name} does not fit {model.path.name}: {misfit}", fixes)
    return adapter


def _misfit(adapter: Path, base: Path) -> str:
    """Why the adapter's tensors do not fit the base model's, or "": every tensor a lora_a/lora_b pair of a tensor
    the base has, lora_a as long as its rows, lora_b as many rows as it has, both of one rank."""
    try:
        mine, theirs = read_tensors(adapter), read_tensors(base)
    except (OSError, NotGGUF, ValueError) as exc:
        return f"its tensors cannot be read ({exc})"
    pairs: dict[str, dict[str, list[int]]] = {}
    for name, dims in mine.items():
        stem, _, part = name.rpartition(".")
        if part not in ("lora_a", "lora_b") or not stem:
            return f"{name} is not a LoRA tensor (NAME.lora_a or NAME.lora_b)"
        pairs.setdefault(stem, {})[part] = dims
    for stem, pair in pairs.items():
        if stem not in theirs:
            return f"it changes {stem}, which the base model does not have"
        if set(pair) != {"lora_a", "lora_b"}:
            return f"{stem} has only {next(iter(pair))}"
        a, b, w = pair["lora_a"], pair["lora_b"], theirs[stem]
        if len(a) != 2 or len(b) != 2 or len(w) < 2:
            return f"{stem}'s LoRA tensors are not matrices ({a}, {b})"
        if a[0] != w[0] or b[1] != w[1] or a[1] != b[0]:
            return f"{stem} is {w[0]}x{w[1]}, its lora_a {a[0]}x{a[1]} and lora_b {b[0]}x{b[1]} do not multiply to it"
    return ""
