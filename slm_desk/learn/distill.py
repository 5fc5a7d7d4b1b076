"""Distillation: a larger model labels raw inputs, people review, and the result trains and tests the small one.

The teacher is a data generator, not an oracle: every answer is validated against the task contract, queued for
review (accept / correct / reject), and an answer that fails validation is queued flagged, never kept silently.
Only reviewed labels are exported:
  (a) a copy of the task file with the best reviewed items as few-shot examples,
  (b) a fine-tuning JSONL in the {"input", "output"} format,
  (c) a held-out split for `eval`, labelled by people and kept out of (a), (b) and the task's example pool.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slm_desk.contract.tasks import Task, parse_task, task_text
from slm_desk.data.store import Store
from slm_desk.errors import Cancelled, SlmDeskError
from slm_desk.judge.pipeline import Pipeline

SOURCE = "distill"


def label_inputs(
    teacher: Pipeline,
    inputs: list[str],
    store: Store,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Ask the teacher for each input and queue every answer for review.

    A teacher that cannot be asked (unreachable, no key) stops the run with an error: a failure is not a label.
    `cancelled` stops it between inputs (Cancelled): what was labelled so far stays queued.
    """
    counts = {"valid": 0, "flagged": 0}
    for i, text in enumerate(inputs, 1):
        if cancelled is not None and cancelled():
            raise Cancelled()
        try:
            answer = teacher.answer(text, cancelled=cancelled)
        except SlmDeskError as exc:
            done = f"{i - 1} of {len(inputs)} inputs were labelled and queued before it failed"
            raise type(exc)(f"the teacher failed: {exc.message}; {done}", exc.hint) from exc
        counts["valid" if answer.valid else "flagged"] += 1
        reason = (
            f"distilled from {answer.model}: valid, awaiting review"
            if answer.valid
            else "FLAGGED: the teacher's answer failed validation: " + "; ".join(answer.errors)
        )
        store.record(answer.model_copy(update={"decision": "review", "reason": reason}), source=SOURCE)
        if progress:
            progress(i, len(inputs))
    return counts


def reviewed(store: Store, task: str) -> list[dict[str, Any]]:
    """People's verdicts on distilled items: {"input", "output", "status"} for accepted and corrected ones."""
    return store.reviewed(task, SOURCE)


def _pick_examples(items: list[dict[str, Any]], task: Task, k: int) -> list[dict[str, Any]]:
    """Accepted-as-is first (the teacher was right), shortest first, one per label before repeating."""
    ordered = sorted(items, key=lambda i: (i["status"] != "accepted", len(i["input"])))
    if not task.labels:
        return ordered[:k]
    field = next(iter(task.labels))
    picked: list[dict[str, Any]] = []
    while len(picked) < k and len(picked) < len(ordered):
        seen = {p["output"].get(field) for p in picked}
        fresh = [i for i in ordered if i not in picked and i["output"].get(field) not in seen]
        picked.append((fresh or [i for i in ordered if i not in picked])[0])
    return picked


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def export(
    store: Store, task: Task, out: Path, examples: int = 4, holdout: float = 0.25, seed: int = 0
) -> dict[str, Any]:
    items = reviewed(store, task.name)
    if len(items) < 2:
        raise ValueError(f"only {len(items)} reviewed items for {task.name}: review more with `slm-desk review`")
    rng = random.Random(seed)
    shuffled = items[:]
    rng.shuffle(shuffled)
    cut = max(1, round(len(shuffled) * holdout))
    held, train = shuffled[:cut], shuffled[cut:]
    chosen = _pick_examples(train, task, examples)
    # the held-out split judges the task, so it must not teach it: out of the example pool it goes
    unpooled = store.remove_pool_inputs(task.name, [item["input"] for item in held])

    text, _ = task_text(task.name)
    version = task.version + 1
    text = (
        re.sub(r"(?m)^version\s*=\s*\d+", f"version = {version}", text)
        if re.search(r"(?m)^version\s*=", text)
        else f"version = {version}\n" + text
    )
    text = text.rstrip() + "\n\n# few-shot examples added by `slm-desk distill export` from reviewed teacher answers\n"
    for item in chosen:
        text += (
            f"\n[[examples]]\ninput = {_toml_string(item['input'])}\n"
            f"output = {_toml_string(json.dumps(item['output'], ensure_ascii=False))}\n"
        )
    parse_task(text, task.name, "distilled copy")  # the copy must load: its examples pass its own validators

    out.mkdir(parents=True, exist_ok=True)
    files = {"task": out / f"{task.name}.toml", "train": out / "train.jsonl", "heldout": out / "heldout.jsonl"}
    files["task"].write_text(text, encoding="utf-8")
    for name, rows in (("train", train), ("heldout", held)):
        files[name].write_text(
            "".join(json.dumps({"input": r["input"], "output": r["output"]}, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8",
        )
    return {
        "examples": len(chosen),
        "train": len(train),
        "heldout": len(held),
        "version": version,
        "heldout_removed_from_pool": unpooled,
        **{f"{k}_file": str(v) for k, v in files.items()},
    }
