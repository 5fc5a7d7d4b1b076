"""`eval`: run a task (with its cascade) over a gold set and measure it.

Concurrency N runs N copies of the model (weights are mmap'd, so they share memory; each has its own KV cache)
with the machine's cores split between them. Eval runs are measurements: they are not written to the history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING, Any

from slm_desk.contract.results import RunResult, Tokens
from slm_desk.contract.tasks import Task
from slm_desk.data.config import CostsConfig
from slm_desk.errors import SlmDeskError
from slm_desk.learn import metrics

if TYPE_CHECKING:
    from slm_desk.judge.cascade import Cascade


def record_of(gold: dict[str, Any], result: RunResult, reference: str | None = None) -> dict[str, Any]:
    """One eval record. Validity is the small model's own (first attempt, after retry); the output is final.
    `reference` is the text a person wrote for the item, where the gold set has one (a draft's ROUGE-L)."""
    escalation = result.escalation or {}
    small_valid = escalation.get("small_output") is not None if result.escalated else result.valid
    return {
        "input": result.input,
        "gold": gold,
        "output": result.output,
        "valid": small_valid,
        "valid_first": small_valid and result.attempts == 1,
        "decision": result.decision,
        "escalated": result.escalated,
        "latency_ms": result.ms,
        "prompt_tokens": result.tokens.prompt,
        "completion_tokens": result.tokens.completion,
        "larger_latency_ms": (result.escalation or {}).get("latency_ms") if result.escalated else None,
        "answered_by": result.answered_by if result.valid else "none",
        "rendered": result.rendered,
        "reference": reference,
    }


def run_eval(
    cascades: list[Cascade],
    task: Task,
    items: list[dict[str, Any]],
    costs: CostsConfig,
    progress: Callable[[int, int], None] | None = None,
    llm_alone: bool = False,
    items_out: Path | None = None,
) -> dict[str, Any]:
    """Run `items` through the cascades (one thread each, items dealt round-robin) and measure the answers;
    `items_out` gets one JSONL line per item: its gold answer, its envelope and its figures."""
    concurrency = len(cascades)
    model = cascades[0].small.backend.model
    records: list[dict[str, Any] | None] = [None] * len(items)
    results: list[RunResult | None] = [None] * len(items)
    lock, done = Lock(), [0]

    def work(worker: int) -> None:
        for index in range(worker, len(items), concurrency):
            try:
                result = cascades[worker % len(cascades)].run(items[index]["input"])
            except SlmDeskError as exc:  # a server that failed this item: counted as an unanswered item
                result = unanswered(task, items[index]["input"], model, exc)
            records[index] = record_of(items[index]["output"], result, items[index].get("reference"))
            results[index] = result
            with lock:
                done[0] += 1
                if progress:
                    progress(done[0], len(items))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(work, range(concurrency)))
    wall = time.perf_counter() - started
    final = [r for r in records if r is not None]
    if items_out is not None:
        write_items(items_out, task, items, [r for r in results if r is not None], final)
    larger = [r["larger_latency_ms"] for r in final if r["larger_latency_ms"]]
    report = metrics.compute(task, final, wall, costs, sum(larger) / len(larger) if larger else None)
    return {
        "task": task.name,
        "task_version": task.version,
        "model": model,
        "escalate": cascades[0].escalation is not None,
        "concurrency": concurrency,
        "adapter": cascades[0].small.backend.tuned,
        "tiers": metrics.by_tier(task, final),
        "frontier": frontier(task, cascades[0], items, final, wall, llm_alone, progress),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **report,
    }


def write_items(
    path: Path, task: Task, items: list[dict[str, Any]], results: list[RunResult], records: list[dict[str, Any]]
) -> None:
    """Each item as a JSONL line: the gold answer, the envelope (`run --jsonl`'s, with `line`), and its figures."""
    from slm_desk.contract.calibration import is_correct
    from slm_desk.contract.words import rouge_l, token_f1

    with path.open("w", encoding="utf-8") as out:
        for line, (item, result, record) in enumerate(zip(items, results, records, strict=True), 1):
            gold, output = item["output"], result.output
            text = {
                f: {
                    "token_f1": token_f1(output.get(f) or "", gold[f]),
                    "rouge_l": rouge_l(output.get(f) or "", gold[f]),
                }
                for f in task.text_fields
                if output is not None and isinstance(gold.get(f), str)
            }
            figures: dict[str, Any] = {
                "right": metrics.answer_right_record(task, record),
                "fields_right": {f: is_correct(output, gold, f, task.match_bar(f)) for f in task.fields if f in gold},
                "text": text,
            }
            if isinstance(item.get("reference"), str):
                figures["rouge_l_reference"] = rouge_l(result.rendered or "", item["reference"])
            envelope = result.envelope(line=line)
            out.write(
                json.dumps(
                    {"line": line, "input": item["input"], "gold": gold, "envelope": envelope, **figures},
                    ensure_ascii=False,
                )
                + "\n"
            )


def frontier(
    task: Task,
    cascade: Cascade,
    items: list[dict[str, Any]],
    records: list[dict[str, Any]],
    wall: float,
    llm_alone: bool,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """The same frontier `train` prints, on the eval set: the head alone (cheap: one batch), the cascade as it ran,
    and with `llm_alone` the small model on every item (slow: it answers all of them)."""
    if cascade.head is None:
        return []
    started = time.perf_counter()
    quick = cascade.head.answer_batch([item["input"] for item in items])
    head_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
    head_records = [
        record_of(item["output"], r if isinstance(r, RunResult) else unanswered(task, item["input"], "head", r))
        for item, r in zip(items, quick, strict=True)
    ]
    rows = [
        metrics.frontier_row(task, "the head alone", head_records, head_ms),
        metrics.frontier_row(task, "the cascade as configured", records, wall * 1000 / max(1, len(records))),
    ]
    if llm_alone:
        alone, started = [], time.perf_counter()
        for done, item in enumerate(items, 1):
            try:
                result = cascade.small.answer(item["input"])
            except SlmDeskError as exc:
                result = unanswered(task, item["input"], cascade.small.backend.model, exc)
            alone.append(record_of(item["output"], result))
            if progress:
                progress(done, len(items))
        ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        rows.append(metrics.frontier_row(task, f"{cascade.small.backend.model} alone", alone, ms))
    return rows


def unanswered(task: Task, text: str, model: str, error: SlmDeskError) -> RunResult:
    """What an item whose backend failed counts as: invalid, for review, with the error as the reason."""
    return RunResult(
        task=task.name,
        task_version=task.version,
        model=model,
        input=text,
        output=None,
        valid=False,
        errors=[error.message],
        decision="review",
        reason=f"not answered: {error.message}",
        attempts=0,
        latency_ms=0,
        tokens=Tokens(),
    )
