"""What a task has learned from, as the Teach screen shows it: the pool (how many items, per label or field,
from where), the head trained on it, and whether the pool has changed since (the head is stale)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slm_desk.contract.results import RunResult
from slm_desk.learn.head import HeadBackend, HeadReport
from slm_desk.learn.training import folds_for

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.store import Store
    from slm_desk.judge.pipeline import Pipeline


@dataclass
class Teaching:
    task: str
    version: int
    pool: int
    sources: dict[str, int]  # file, review, distill ...: how many items each gave
    items: list[dict[str, Any]] = field(default_factory=list)  # the pool itself, oldest first
    values: dict[str, Counter[str]] = field(default_factory=dict)  # per head field: label (or filled/null) -> items
    head: HeadReport | None = None
    stale: str = ""  # why the head no longer matches the pool ("" when it does, or there is no head)
    can_train: bool = False  # every output field is a label or a verbatim span
    train_steps: int = 0  # what `train` says it does, one line each: a fit per fold, then one on the whole pool


def head_report(store: Store, task: Task) -> HeadReport | None:
    raw = store.head_report(task.name, task.version)
    return HeadReport.model_validate_json(raw) if raw is not None else None


def teaching(store: Store, task: Task) -> Teaching:
    items = store.pool(task.name, task.version)
    values: dict[str, Counter[str]] = {}
    for name, kind in task.head_fields.items():
        if kind == "label":
            values[name] = Counter(str(item["output"].get(name)) for item in items)
        else:
            values[name] = Counter("filled" if item["output"].get(name) is not None else "null" for item in items)
    report = head_report(store, task)
    state = Teaching(task.name, task.version, len(items), store.pool_sources(task.name, task.version), items, values)
    state.head, state.can_train = report, bool(task.head_fields)
    state.train_steps = folds_for(len(items)) + 1
    if report is not None:
        now = list(store.pool_signature(task.name, task.version))
        if not items:
            state.stale = "the pool is empty: the head is not used"
        elif report.pool_signature != now if report.pool_signature else report.pool_size != len(items):
            state.stale = f"the pool has changed since training ({report.pool_size} -> {len(items)} items)"
    return state


def annotate(task: Task, items: list[dict[str, Any]], first: Pipeline | None) -> None:
    """Review items of `task` (this version), annotated in place for the queue: whether the answer is high-risk
    and, where the task has a trained head (`first`), what it answers (`head_answer`), whether that disagrees with
    the queued answer, how unsure it is (`margin`) and, for a head that reads embeddings, the input's embedding
    (`vector`: the teaching order skips near-duplicates)."""
    candidates = [json.loads(item["candidate"]) if item["candidate"] else None for item in items]
    for item, candidate in zip(items, candidates, strict=True):
        item["high_risk"] = isinstance(candidate, dict) and bool(task.always_reviewed(candidate))
    if first is None or not items:
        return
    texts = [item["input"] for item in items]
    answers = first.answer_batch(texts)
    backend = first.backend
    assert isinstance(backend, HeadBackend)
    vectors = backend.vectors(texts)  # the store has them now: answer_batch kept them
    margins = backend.head.margins(texts, vectors)
    for n, (item, candidate, answer) in enumerate(zip(items, candidates, answers, strict=True)):
        item["head_answer"] = answer.output if isinstance(answer, RunResult) else None
        item["disagrees"] = item["head_answer"] is not None and item["head_answer"] != candidate
        item["margin"] = margins[n]
        item["vector"] = vectors[n] if vectors is not None else None
