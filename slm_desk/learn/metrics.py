"""Task metrics from eval records: pure functions, so they can be checked by hand.

A record is one gold item and what the cascade did with it:
    {"gold": {...}, "output": {...} or None, "valid": bool, "valid_first": bool, "decision": str,
     "escalated": bool, "latency_ms": int, "prompt_tokens": int, "completion_tokens": int}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from slm_desk.contract.calibration import is_correct
from slm_desk.contract.followup import split
from slm_desk.contract.words import rouge_l, token_f1

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.config import CostsConfig


def _right(task: Task, record: dict[str, Any], fields: list[str]) -> bool:
    """Every one of `fields` the gold names is right (a gold line may leave out what it does not know)."""
    return all(
        is_correct(record["output"], record["gold"], f, task.match_bar(f)) for f in fields if f in record["gold"]
    )


def answer_right_record(task: Task, record: dict[str, Any]) -> bool:
    """One eval record's answer is right on every field its gold names (what `accuracy` counts)."""
    return _right(task, record, task.fields)


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def label_metrics(task: Task, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per label field and label: precision, recall, support; and the miss rate of high-risk labels."""
    report: dict[str, dict[str, Any]] = {}
    for field, risks in task.labels.items():
        per_label = {}
        for label, risk in risks.items():
            predicted = [r for r in records if r["output"] is not None and r["output"].get(field) == label]
            actual = [r for r in records if r["gold"].get(field) == label]
            true_pos = sum(r["gold"].get(field) == label for r in predicted)
            accepted = [r for r in predicted if r["decision"] == "accept"]
            rule = task.rule(risk)
            entry: dict[str, Any] = {
                "risk": risk,
                "support": len(actual),
                "predicted": len(predicted),
                "precision": true_pos / len(predicted) if predicted else None,
                "recall": true_pos / len(actual) if actual else None,
                "accepted": len(accepted),
                "accepted_precision": _rate([r["gold"].get(field) == label for r in accepted]),
                "target": None if rule.always_review else rule.target,
            }
            if risk == "high":
                entry["false_negative_rate"] = 1 - entry["recall"] if actual else None
            per_label[label] = entry
        report[field] = per_label
    return report


def null_kept(task: Task, records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per field that gold leaves null on some items (an invoice id a ticket does not name): the share of those
    items whose answer leaves it null too, where an unanswered item counts as not null."""
    report: dict[str, float | None] = {}
    for field in task.fields:
        absent = [r for r in records if field in r["gold"] and r["gold"][field] is None]
        if absent:
            report[field] = _rate([r["output"] is not None and r["output"].get(field) is None for r in absent])
    return report


def text_metrics(task: Task, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per free-text field: mean token F1 and exact match against the gold text (an unanswered item scores 0),
    the share counted right (F1 at least the task's bar), and, of the items whose gold is the input's last line
    unchanged (a question already standalone), the share the answer left unchanged too."""
    report: dict[str, dict[str, Any]] = {}
    for field in task.text_fields:
        scored = [r for r in records if isinstance(r["gold"].get(field), str)]
        answers = [(r["output"] or {}).get(field) for r in scored]
        pairs = list(zip(answers, scored, strict=True))
        f1 = [token_f1(a, r["gold"][field]) if isinstance(a, str) else 0.0 for a, r in pairs]
        # a follow-up already standalone (rewrite-followup's `edits` field): was it left as it was?
        kept = [
            a == split(r.get("input", ""))[1]
            for a, r in pairs
            if field == task.edits and r["gold"][field] == split(r.get("input", ""))[1]
        ]
        report[field] = {
            "n": len(scored),
            "token_f1": sum(f1) / len(f1) if f1 else None,
            "rouge_l": sum(rouge_l(a, r["gold"][field]) if isinstance(a, str) else 0.0 for a, r in pairs) / len(pairs)
            if pairs
            else None,
            "exact_match": _rate([a == r["gold"][field] for a, r in pairs]),
            "right_at_bar": _rate([v >= task.text_match for v in f1]),
            "bar": task.text_match,
            "unchanged_gold": len(kept),
            "unchanged_kept": _rate(kept),
        }
    return report


def draft_metrics(task: Task, records: list[dict[str, Any]]) -> dict[str, Any]:
    """For a task that drafts from templates: the template chosen right, the slots right (every other field), the
    whole draft right (what is sent), and, where the gold item carries the reply a person wrote (`reference`), the
    draft's ROUGE-L against it: how close in words, beside the exactness that matters."""
    if task.template is None and not task.templates:
        return {}
    keys = list(task.templates)
    slot_fields = [f for f in task.fields if f not in keys]
    answered = [r for r in records if r["output"] is not None]
    references = [r for r in records if isinstance(r.get("reference"), str)]
    drafts = [(r.get("rendered") or "") for r in references]
    return {
        "template_right": _rate([_right(task, r, keys) for r in records]) if keys else None,
        "slots_exact": _rate([_right(task, r, slot_fields) for r in records]),
        "draft_exact": _rate([r in answered and task.render(r["output"]) == task.render(r["gold"]) for r in records]),
        "rouge_l": sum(rouge_l(d, r["reference"]) for d, r in zip(drafts, references, strict=True)) / len(references)
        if references
        else None,
        "rouge_l_gold_draft": sum(rouge_l(task.render(r["gold"]) or "", r["reference"]) for r in references)
        / len(references)
        if references
        else None,
    }


def by_tier(task: Task, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Accuracy, accept rate and latency of the items each tier answered (head, model, escalation, none)."""
    tiers: dict[str, dict[str, Any]] = {}
    for tier in ("head", "model", "escalation", "none"):
        mine = [r for r in records if r.get("answered_by", "model") == tier]
        if mine:
            tiers[tier] = {
                "n": len(mine),
                "accuracy": _rate([_right(task, r, task.fields) for r in mine]),
                "accept_rate": _rate([r["decision"] == "accept" for r in mine]),
                "latency_ms_p50": percentile([float(r["latency_ms"]) for r in mine], 50),
                "latency_ms_mean": sum(r["latency_ms"] for r in mine) / len(mine),
            }
    return tiers


def frontier_row(task: Task, setup: str, records: list[dict[str, Any]], ms_per_item: float) -> dict[str, Any]:
    """One setup of the tier frontier: how often it is right, how right what it accepts is, and what it costs."""
    accepted = [r for r in records if r["decision"] == "accept"]
    return {
        "setup": setup,
        "n": len(records),
        "accuracy": _rate([_right(task, r, task.fields) for r in records]),
        "accepted_precision": _rate([_right(task, r, task.fields) for r in accepted]),
        "accept_rate": _rate([r["decision"] == "accept" for r in records]),
        "ms_per_item": ms_per_item,
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def compute(
    task: Task,
    records: list[dict[str, Any]],
    wall_seconds: float,
    costs: CostsConfig,
    larger_latency_ms: float | None = None,
) -> dict[str, Any]:
    n = len(records)
    fields = task.fields
    extracted = [f for f in fields if f not in task.labels and f not in task.text_fields]  # text: its own line
    accepted = [r for r in records if r["decision"] == "accept"]
    latencies = [float(r["latency_ms"]) for r in records]
    report: dict[str, Any] = {
        "n": n,
        "accuracy": _rate([_right(task, r, fields) for r in records]),
        "labels": label_metrics(task, records),
        "validity_first_attempt": _rate([r["valid_first"] for r in records]),
        "validity_after_retry": _rate([r["valid"] for r in records]),
        "field_exact_match": {f: _rate([_right(task, r, [f]) for r in records if f in r["gold"]]) for f in extracted},
        "null_kept": null_kept(task, records),
        "text": text_metrics(task, records),
        "drafts": draft_metrics(task, records),
        "accept_rate": _rate([r["decision"] == "accept" for r in records]),
        "escalation_rate": _rate([r["escalated"] for r in records]),
        "review_rate": _rate([r["decision"] == "review" for r in records]),
        "accepted_accuracy": _rate([_right(task, r, fields) for r in accepted]),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "throughput_per_s": n / wall_seconds if wall_seconds > 0 else None,
        "wall_seconds": wall_seconds,
    }
    report["cost_per_1k"] = cost_per_1k(records, wall_seconds, costs, larger_latency_ms)
    return report


def cost_per_1k(
    records: list[dict[str, Any]], wall_seconds: float, costs: CostsConfig, larger_latency_ms: float | None
) -> dict[str, Any]:
    """The cascade's cost per 1,000 requests against sending every request to the larger model.

    Local cost is machine time at `local_per_hour`; escalation cost is the endpoint's token prices applied to
    the same prompt and answer sizes the small model saw (the request the larger model gets is the same).
    """
    n = len(records)
    price_in = costs.escalation_per_1k_input_tokens / 1000
    price_out = costs.escalation_per_1k_output_tokens / 1000
    per_second = costs.local_per_hour / 3600
    if n == 0 or not (price_in or price_out or per_second):  # no [costs] configured: a cost of 0 would be a lie
        return {}

    def token_cost(r: dict[str, Any]) -> float:
        return float(r["prompt_tokens"] * price_in + r["completion_tokens"] * price_out)

    local = wall_seconds * per_second
    escalated = sum(token_cost(r) for r in records if r["escalated"])
    cascade = (local + escalated) / n * 1000
    always_tokens = sum(token_cost(r) for r in records)
    always_time = (larger_latency_ms or 0) / 1000 * n * per_second
    always = (always_tokens + always_time) / n * 1000 if (price_in or price_out or larger_latency_ms) else None
    return {
        "cascade": cascade,
        "always_larger": always,
        "saving": (1 - cascade / always) if always else None,
        "note": "set [costs] in config.toml to price machine time and escalation tokens"
        if not (costs.local_per_hour or price_in or price_out)
        else "",
    }


HIGHER_IS_BETTER = ["accuracy", "validity_after_retry", "accepted_accuracy", "accept_rate", "throughput_per_s"]
LOWER_IS_BETTER = ["latency_ms_p95", "review_rate"]


def regressions(a: dict[str, Any], b: dict[str, Any], tolerance: float = 0.01) -> list[str]:
    """What got worse from run A to run B (rates by more than a point, latency by more than 10 %)."""
    found = []
    for key in HIGHER_IS_BETTER:
        if a.get(key) is not None and b.get(key) is not None:
            limit = a[key] * 0.9 if key == "throughput_per_s" else a[key] - tolerance
            if b[key] < limit:
                found.append(f"{key}: {a[key]:.3f} -> {b[key]:.3f}")
    for key in LOWER_IS_BETTER:
        if a.get(key) is not None and b.get(key) is not None:
            limit = a[key] * 1.1 if key.startswith("latency") else a[key] + tolerance
            if b[key] > limit:
                found.append(f"{key}: {a[key]:.3f} -> {b[key]:.3f}")
    for field, entry in a.get("text", {}).items():
        before, after = entry.get("token_f1"), b.get("text", {}).get(field, {}).get("token_f1")
        if before is not None and after is not None and after < before - tolerance:
            found.append(f"token F1 of {field}: {before:.3f} -> {after:.3f}")
    for field, labels in a.get("labels", {}).items():
        for label, entry in labels.items():
            other = b.get("labels", {}).get(field, {}).get(label, {})
            before, after = entry.get("false_negative_rate"), other.get("false_negative_rate")
            if before is not None and after is not None and after > before + tolerance:
                found.append(f"false negatives of high-risk {field}={label}: {before:.3f} -> {after:.3f}")
    return found
