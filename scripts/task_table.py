"""Section 8 of the benchmark: every built-in task on the bundled model, static and taught, with the metric that
fits it, on its built-in eval set. Run through the CLI a user runs (`eval --json`), in a fresh SLM_DESK_HOME.

    .venv/bin/python scripts/benchmark.py --sections 8 --items 100

static: the task's own few-shot examples, no pool, no head. taught: where public labelled data gives a pool
(scripts/teach_data.py, held apart from the eval sets): route-ticket and extract-booking answered by their
trained heads (`train --compare 0`: the head as trained, the LLM not measured as a next tier), rewrite-followup
by the 135M model with 8 retrieved CAsT examples. extract-ticket, guard and rewrite-query have no public
labelled pool: their eval sets are the only labels, and they judge, so they are not taught here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Slm = Callable[..., Any]
HEADS = ("route-ticket", "extract-booking")
RETRIEVAL = ("rewrite-followup",)


def metric(report: dict[str, Any]) -> str:
    """The figure that fits the task: token F1 for free text, else exact match; with what else it needs."""
    parts = []
    for field, text in (report.get("text") or {}).items():
        kept = _pct(text["unchanged_kept"])
        parts.append(f"{field} token F1 {text['token_f1']:.3f}, standalone left unchanged {kept}")
    if not parts:
        parts.append(f"exact {_pct(report['accuracy'])}")
    for field, rate in (report.get("null_kept") or {}).items():
        parts.append(f"{field} null when absent {_pct(rate)}")
    for field, labels in (report.get("labels") or {}).items():
        if len(report["labels"]) == 1 and len(labels) <= 6:
            right = sum((e["recall"] or 0) * e["support"] for e in labels.values())
            parts.append(f"{field} right {_pct(right / max(1, sum(e['support'] for e in labels.values())))}")
    return "; ".join(parts)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def row(name: str, setup: str, report: dict[str, Any]) -> None:
    print(
        f"  {name:<17} {setup:<28} {report['n']:>4} items  {metric(report)};"
        f" valid {_pct(report['validity_after_retry'])}, accepted {_pct(report['accept_rate'])},"
        f" p50 {report['latency_ms_p50'] or 0:,.0f} ms"
    )


def copy_baseline(name: str, path: Path, items: int) -> tuple[int, float] | None:
    """A rewrite task's simplest baseline: its input (a follow-up: the last line) as the answer, token F1 against
    the gold text of the same items the model answers."""
    from slm_desk.contract.followup import split
    from slm_desk.contract.tasks import load_task
    from slm_desk.contract.words import token_f1
    from slm_desk.data.evalset import read_jsonl

    task = load_task(name)
    if not task.text_fields:
        return None
    field = task.text_fields[0]
    gold = read_jsonl(path)[:items]
    scores = [token_f1(split(i["input"])[1] if task.edits else i["input"], i["output"][field]) for i in gold]
    return len(scores), sum(scores) / len(scores)


def report(slm: Slm, pools: Path, names: list[str], items: int) -> None:
    print(f"\n8. every built-in task on the bundled model, its built-in eval set (LLM setups: first {items} items)")
    for name in names:
        path = Path(__file__).resolve().parent.parent / "slm_desk" / "evalsets" / f"{name}.jsonl"
        if not path.is_file():
            print(f"  {name:<17} no eval set")
            continue
        copied = copy_baseline(name, path, items)
        if copied is not None:
            print(f"  {name:<17} {'copy the input (baseline)':<28} {copied[0]:>4} items  token F1 {copied[1]:.3f}")
        static = json.loads(slm("eval", name, "--json", "--no-pool", "--limit", str(items)).stdout)
        row(name, "static (few-shot examples)", static)
        if name in HEADS + RETRIEVAL:
            slm("examples", "add", name, str(pools / f"{name}.pool.jsonl"))
        if name in HEADS:
            slm("train", name, "--compare", "0")
            row(name, "taught: trained head", json.loads(slm("eval", name, "--json").stdout))
        elif name in RETRIEVAL:
            taught = json.loads(slm("eval", name, "--json", "--limit", str(items)).stdout)
            row(name, "taught: 8 retrieved examples", taught)
