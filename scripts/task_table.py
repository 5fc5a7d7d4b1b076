"""Section 8 of the benchmark: every built-in task on the bundled model, static and taught, with the metric that
fits it, on its built-in eval set. Run through the CLI a user runs (`eval --json`), in a fresh SLM_DESK_HOME.

    .venv/bin/python scripts/benchmark.py --sections 8 --items 100

static: the task's own few-shot examples, no pool, no head. taught: where public labelled data gives a pool
(scripts/teach_data.py, held apart from the eval sets): route-ticket, extract-booking, draft-support-reply, guard,
rewrite-query and title-bug-report answered by their trained heads (`train --compare 0`: the head as trained, the
LLM not measured as a next tier), rewrite-followup by the 135M model with 8 retrieved CAsT examples. extract-ticket
and draft-reply have no public labelled pool: their eval sets are the only labels, and they judge.
Each task's simplest baseline is computed on the same items, with no model: copying the input, the input with its
stopwords dropped, its first sentence cut to 12 words, or TF-IDF + logistic regression on the pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Slm = Callable[..., Any]
HEADS = ("route-ticket", "extract-booking", "draft-support-reply", "guard", "rewrite-query", "title-bug-report")
RETRIEVAL = ("rewrite-followup",)


def metric(report: dict[str, Any]) -> str:
    """The figure that fits the task: token F1 for free text, else exact match; with what else it needs."""
    parts = []
    for field, text in (report.get("text") or {}).items():
        kept = f", standalone left unchanged {_pct(text['unchanged_kept'])}" if text.get("unchanged_gold") else ""
        rouge = f", ROUGE-L {text['rouge_l']:.3f}" if text.get("rouge_l") is not None else ""
        parts.append(f"{field} token F1 {text['token_f1']:.3f}{rouge}{kept}")
    drafts = report.get("drafts") or {}
    if drafts:
        parts.append(
            f"template right {_pct(drafts['template_right'])}, draft exact {_pct(drafts['draft_exact'])}, "
            f"ROUGE-L to the person's reply {drafts['rouge_l'] or 0:.3f}"
        )
    if not parts:
        parts.append(f"exact {_pct(report['accuracy'])}")
    safe = (report.get("labels") or {}).get("label", {}).get("safe")
    injection = (report.get("labels") or {}).get("label", {}).get("prompt_injection")
    if safe and injection and injection["support"]:
        passed = round((safe["accepted"] or 0) * (1 - (safe["accepted_precision"] or 1.0)))
        parts.append(f"injections accepted as safe {passed} of {injection['support']}")
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


def baselines(name: str, path: Path, pools: Path) -> list[tuple[str, str]]:
    """The simplest strong baselines of a task, on all of its eval set, with no model: (setup, figure)."""
    import re
    import time

    from slm_desk.contract.words import FUNCTION_WORDS, token_f1
    from slm_desk.data.evalset import read_jsonl

    gold = read_jsonl(path)
    rows = []
    if name == "rewrite-query":
        for setup, answer in (
            ("copy the input", lambda t: t),
            (
                "stopwords dropped",
                lambda t: " ".join(w for w in t.split() if w.lower().strip(".,?!") not in FUNCTION_WORDS),
            ),
        ):
            f1 = sum(token_f1(answer(g["input"]), g["output"]["query"]) for g in gold) / len(gold)
            rows.append((setup, f"query token F1 {f1:.3f}"))
    if name == "title-bug-report":

        def first(text: str) -> str:
            sentence = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]
            return " ".join(sentence.split()[:12])

        f1 = sum(token_f1(first(g["input"]), g["output"]["title"]) for g in gold) / len(gold)
        rows.append(("first sentence, 12 words", f"title token F1 {f1:.3f}"))
    field = {"draft-support-reply": "intent", "guard": "label", "route-ticket": "route"}.get(name)
    if field is not None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        pool = [i for i in read_jsonl(pools / f"{name}.pool.jsonl") if field in i["output"]]
        started = time.perf_counter()
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        model = LogisticRegression(C=10, max_iter=2000).fit(
            vectorizer.fit_transform([i["input"] for i in pool]), [i["output"][field] for i in pool]
        )
        predicted = model.predict(vectorizer.transform([g["input"] for g in gold]))
        ms = (time.perf_counter() - started) * 1000 / len(gold)
        right = sum(p == g["output"][field] for p, g in zip(predicted, gold, strict=True)) / len(gold)
        rows.append(("TF-IDF + LR on the pool", f"{field} right {right:.1%} (fit and answer {ms:.1f} ms/item)"))
    return rows


def report(slm: Slm, pools: Path, names: list[str], items: int) -> None:
    print(f"\n8. every built-in task on the bundled model, its built-in eval set (LLM setups: first {items} items)")
    for name in names:
        path = Path(__file__).resolve().parent.parent / "slm_desk" / "evalsets" / f"{name}.jsonl"
        if not path.is_file():
            print(f"  {name:<17} no eval set")
            continue
        copied = copy_baseline(name, path, items)
        if copied is not None and name == "rewrite-followup":
            print(f"  {name:<17} {'copy the input (baseline)':<28} {copied[0]:>4} items  token F1 {copied[1]:.3f}")
        for setup, figure in baselines(name, path, pools):
            print(f"  {name:<17} {'baseline: ' + setup:<28} all items  {figure}")
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
