"""`slm-desk eval`, `bench` and `distill`: measure a task on your data and hardware, and grow its data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slm_desk import exit_codes

EVAL_HELP = """\
Run TASK, as configured (calibration, risk rules and, with --escalate, the cascade), over a gold JSONL
({"input", "output"} lines; default: the task's built-in eval set) and report: accuracy; precision and recall
per label and the false-negative rate of high-risk labels; JSON validity before and after the retry; exact
match per extracted field; accept, escalation and review rates and the accuracy of what was accepted; latency
p50/p95 and throughput; cost per 1,000 requests ([costs] in config.toml) against always using the larger model.

Items that are also in the task's example pool are dropped first (and counted): a score is never measured
on what the task learned from. The report splits accuracy, accept rate and latency by the tier that answered
(head, model, escalation), and with a trained head shows the frontier: the head alone against the cascade
(--llm-alone adds the small model on every item). --no-pool measures the task as before it learned from its pool.

  slm-desk eval extract-booking --json > before.json
  slm-desk eval compare before.json after.json     # side by side; exit 5 when something regressed
  slm-desk eval route-ticket --no-pool --json > static.json && slm-desk eval route-ticket --json > taught.json
"""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = commands.add_parser(
        "eval",
        help="measure a task (and its cascade) on a gold set",
        description=EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("target", nargs="+", help="TASK, or: compare A.json B.json")
    ev.add_argument("--data", metavar="FILE", help="gold JSONL (default: the task's built-in eval set)")
    ev.add_argument("--model", "-m", metavar="ID", help="model id or .gguf path (default: config [models] small)")
    ev.add_argument("--escalate", action="store_true", help="include escalation to the configured larger model")
    ev.add_argument("--concurrency", type=int, default=1, metavar="N", help="parallel copies of the model")
    ev.add_argument(
        "--accept-at", type=float, metavar="P", help="accept answers with confidence >= P (instead of calibration)"
    )
    ev.add_argument("--limit", type=int, metavar="N", help="the first N items only")
    ev.add_argument(
        "--no-pool", action="store_true", help="without the trained head and retrieved examples (the static prompt)"
    )
    ev.add_argument("--no-adapter", action="store_true", help="without the task's fine-tuned adapter")
    ev.add_argument(
        "--llm-alone",
        action="store_true",
        help="with a trained head: also run the small model alone on every item, for the frontier (slow)",
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument(
        "--items",
        metavar="FILE",
        help="also write each item as a JSONL line: its gold answer, the envelope it got and its per-item figures "
        "(right, per-field right, token F1 and ROUGE-L of text fields), so any metric can be computed from one run",
    )
    ev.set_defaults(handler=cmd_eval)

    bench = commands.add_parser(
        "bench",
        help="load time, tokens/s, latency per task item and peak memory on this machine",
        description="Measure one model on this machine: load time, prompt and generation tokens/s (free text\n"
        "and under a JSON grammar), end-to-end latency per task item through the real pipeline, peak memory.\n"
        "  slm-desk bench --model qwen2.5-0.5b --task route-ticket",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--model", "-m", metavar="ID", help="model id or .gguf path (default: config [models] small)")
    bench.add_argument("--task", default="extract-ticket", help="task whose items are timed (default extract-ticket)")
    bench.add_argument("--items", type=int, default=10, metavar="N", help="task items to time (default 10)")
    bench.add_argument("--no-adapter", action="store_true", help="without the task's fine-tuned adapter")
    bench.add_argument("--json", action="store_true", help="print the numbers as JSON")
    bench.set_defaults(handler=cmd_bench)

    distill = commands.add_parser(
        "distill",
        help="label raw inputs with a larger model, review them, export examples and data",
        description="  slm-desk distill TASK --inputs raw.txt [--teacher URL|MODEL_ID] [--teacher-model NAME]\n"
        "      the teacher answers each line; every answer is validated and queued for review (flagged when it\n"
        "      fails validation). Review with `slm-desk review` or the app (F3).\n"
        "  slm-desk distill export TASK --out DIR [--examples 4] [--holdout 0.25]\n"
        "      writes DIR/TASK.toml (a copy with the best reviewed items as few-shot examples, version bumped),\n"
        "      DIR/train.jsonl (fine-tuning data) and DIR/heldout.jsonl (people-labelled, for `slm-desk eval`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    distill.add_argument("target", nargs="+", help="TASK, or: export TASK")
    distill.add_argument("--inputs", metavar="FILE", help="one raw input per line")
    distill.add_argument("--teacher", metavar="URL|MODEL_ID", help="default: the [escalation] model")
    distill.add_argument("--teacher-model", metavar="NAME", help="model name at the teacher URL")
    distill.add_argument("--out", metavar="DIR", help="export: the folder to write")
    distill.add_argument(
        "--examples", type=int, default=4, metavar="N", help="export: reviewed items that become few-shot examples"
    )
    distill.add_argument(
        "--holdout", type=float, default=0.25, metavar="SHARE", help="export: share kept for heldout.jsonl (0.25)"
    )
    distill.set_defaults(handler=cmd_distill)


def _progress(label: str) -> Any:
    def show(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"  {label} {done}/{total}", file=sys.stderr, flush=True)

    return show


def _fmt(value: Any, pct: bool = True, places: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if pct else f"{value:,.{places}f}"


def _answered_by(r: dict[str, Any]) -> str:
    """Who answered the items: the head, the small model (named), the larger one; the model when nothing else."""
    tiers = r.get("tiers") or {}
    names = {"head": "the trained head", "model": r["model"], "escalation": "the larger model", "none": "nobody"}
    counts = [(names[tier], stats["n"]) for tier, stats in tiers.items()]
    if not counts:
        return f"on {r['model']}"
    if len(counts) == 1:
        return f"answered by {counts[0][0]}"
    return "answered by " + ", ".join(f"{name} ({n})" for name, n in counts)


def render_eval(r: dict[str, Any]) -> str:
    lines = [
        f"{r['task']} v{r['task_version']} {_answered_by(r)}: {r['n']} items, concurrency {r['concurrency']}"
        + (", with escalation" if r["escalate"] else "")
        + (", static prompt (no pool)" if r.get("learned") is False else "")
        + (", fine-tuned adapter" if r.get("adapter") else ""),
        f"  accuracy {_fmt(r['accuracy'])}   accepted accuracy {_fmt(r['accepted_accuracy'])}",
        f"  valid JSON+contract: first attempt {_fmt(r['validity_first_attempt'])}, "
        f"after retry {_fmt(r['validity_after_retry'])}",
        f"  accept {_fmt(r['accept_rate'])}   escalate {_fmt(r['escalation_rate'])}   review {_fmt(r['review_rate'])}",
        f"  latency p50 {_fmt(r['latency_ms_p50'], False)} ms, p95 {_fmt(r['latency_ms_p95'], False)} ms; "
        f"throughput {r['throughput_per_s'] or 0:.2f}/s",
    ]
    for tier, t in (r.get("tiers") or {}).items():
        lines.append(
            f"  answered by {tier:<10} {t['n']:>5} items  accuracy {_fmt(t['accuracy']):>6}"
            f"  accepted {_fmt(t['accept_rate']):>6}  latency p50 {_fmt(t['latency_ms_p50'], False)} ms"
        )
    if r.get("frontier"):
        lines.append(f"  {'frontier':<36} {'accuracy':>8} {'accepted precision':>19} {'accepted':>9} {'ms/item':>9}")
        for row in r["frontier"]:
            lines.append(
                f"  {row['setup']:<36} {_fmt(row['accuracy']):>8} {_fmt(row['accepted_precision']):>19}"
                f" {_fmt(row['accept_rate']):>9} {row['ms_per_item']:>9.2f}"
            )
    if r["field_exact_match"]:
        lines.append("  exact match: " + ", ".join(f"{f} {_fmt(v)}" for f, v in r["field_exact_match"].items()))
    if r.get("null_kept"):
        lines.append(
            "  left null where the gold is null: " + ", ".join(f"{f} {_fmt(v)}" for f, v in r["null_kept"].items())
        )
    for field, t in (r.get("text") or {}).items():
        unchanged = (
            f"; gold unchanged on {t['unchanged_gold']}, of them left unchanged {_fmt(t['unchanged_kept'])}"
            if t.get("unchanged_gold")
            else ""
        )
        lines.append(
            f"  {field} (free text, {t['n']} items): token F1 {_fmt(t['token_f1'], False, 3)},"
            f" ROUGE-L {_fmt(t.get('rouge_l'), False, 3)}, exact {_fmt(t['exact_match'])},"
            f" counted right (F1 >= {t['bar']:g}) {_fmt(t['right_at_bar'])}{unchanged}"
        )
    drafts = r.get("drafts") or {}
    if drafts:
        lines.append(
            f"  drafts: template right {_fmt(drafts.get('template_right'))}, slots exact {_fmt(drafts['slots_exact'])},"
            f" draft exact {_fmt(drafts['draft_exact'])}"
            + (
                f"; ROUGE-L against the reply a person wrote {_fmt(drafts['rouge_l'], False, 3)}"
                f" (the right template's own: {_fmt(drafts['rouge_l_gold_draft'], False, 3)})"
                if drafts.get("rouge_l") is not None
                else ""
            )
        )
    for field, labels in r["labels"].items():
        lines.append(f"  {field}:")
        for label, e in labels.items():
            fnr = f"  false negatives {_fmt(e['false_negative_rate'])}" if "false_negative_rate" in e else ""
            accepted = ""
            if e.get("accepted"):
                target = "always reviewed" if e.get("target") is None else f"target {e['target']:.0%}"
                accepted = f"  accepted {e['accepted']}: precision {_fmt(e['accepted_precision'])} ({target})"
            lines.append(
                f"    {label:<24} precision {_fmt(e['precision']):>6}  recall {_fmt(e['recall']):>6}"
                f"  n={e['support']:<4}{fnr}{accepted}"
            )
    cost = r.get("cost_per_1k") or {}
    if cost:
        always = "-" if cost.get("always_larger") is None else f"{cost['always_larger']:.4f}"
        saving = "" if cost.get("saving") is None else f" (saving {cost['saving']:.0%})"
        lines.append(
            f"  cost per 1,000: cascade {cost['cascade']:.4f}, always the larger model {always}{saving}"
            + (f"  [{cost['note']}]" if cost.get("note") else "")
        )
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from slm_desk.errors import UsageError

    if args.target[0] == "compare":
        if len(args.target) != 3:
            raise UsageError("eval compare needs two report files", "slm-desk eval compare A.json B.json")
        return _compare(Path(args.target[1]), Path(args.target[2]))
    if len(args.target) != 1:
        raise UsageError("eval takes one task", "slm-desk eval TASK [--data FILE]")
    from slm_desk.contract.tasks import load_task
    from slm_desk.data.evalset import read_jsonl, resolve_data
    from slm_desk.data.pool import without_pool
    from slm_desk.desk import Desk

    task = load_task(args.target[0])
    path = resolve_data(task.name, args.data)
    items = read_jsonl(path)[: args.limit] if args.limit else read_jsonl(path)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1", "pass --concurrency 1 or more")
    desk = Desk()
    if args.escalate and not desk.config.escalation.enabled:
        raise UsageError("--escalate needs escalation configured", "add an [escalation] section to config.toml")
    items, dropped = without_pool(desk.store, task, items)
    if dropped:
        print(
            f"dropped {dropped} items that are in {task.name}'s example pool (learned from, not judged)",
            file=sys.stderr,
        )
    if not items:
        raise UsageError(f"every item of {path} is in {task.name}'s example pool", "evaluate on data held out")
    print(f"evaluating {task.name} on {len(items)} items from {path}", file=sys.stderr)
    report = desk.evaluate(
        task,
        items,
        args.model,
        args.escalate,
        args.concurrency,
        args.accept_at,
        _progress("eval"),
        learned=not args.no_pool,
        adapter=not args.no_adapter,
        llm_alone=args.llm_alone,
        items_out=Path(args.items) if args.items else None,
    )
    report["data"] = str(path)
    if args.items:
        print(f"wrote {len(items)} items with their envelopes to {args.items}", file=sys.stderr)
    report["dropped_in_pool"] = dropped
    print(json.dumps(report, indent=2) if args.json else render_eval(report))
    return 0


def _compare(a_path: Path, b_path: Path) -> int:
    from slm_desk.errors import UsageError
    from slm_desk.learn.metrics import regressions

    reports = []
    for path in (a_path, b_path):
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}", "pass two files written by `eval --json`") from exc
        except ValueError as exc:
            raise UsageError(f"{path} is not an eval report: {exc}", "pass two files written by `eval --json`") from exc
    a, b = reports
    keys = [
        "accuracy",
        "accepted_accuracy",
        "validity_first_attempt",
        "validity_after_retry",
        "accept_rate",
        "escalation_rate",
        "review_rate",
        "latency_ms_p50",
        "latency_ms_p95",
        "throughput_per_s",
    ]
    print(f"{'':<24} {a_path.name[:18]:>18} {b_path.name[:18]:>18}")
    print(f"{'model':<24} {a['model'][:18]:>18} {b['model'][:18]:>18}")
    for key in keys:
        pct = not (key.startswith("latency") or key.startswith("throughput"))
        print(f"{key:<24} {_fmt(a.get(key), pct):>18} {_fmt(b.get(key), pct):>18}")
    for field in dict.fromkeys([*(a.get("text") or {}), *(b.get("text") or {})]):
        ta, tb = (a.get("text") or {}).get(field, {}), (b.get("text") or {}).get(field, {})
        for key, pct in (("token_f1", False), ("exact_match", True), ("unchanged_kept", True)):
            name = f"{field} {key.replace('_', ' ')}"
            print(f"{name[:24]:<24} {_fmt(ta.get(key), pct, 3):>18} {_fmt(tb.get(key), pct, 3):>18}")
    found = regressions(a, b)
    for line in found:
        print(f"REGRESSION  {line}")
    print("no regressions" if not found else f"{len(found)} regression(s)", file=sys.stderr)
    return exit_codes.REGRESSED if found else exit_codes.OK


def cmd_bench(args: argparse.Namespace) -> int:
    from slm_desk.contract.tasks import load_task
    from slm_desk.data.config import load_config
    from slm_desk.data.evalset import builtin, read_jsonl
    from slm_desk.learn.bench import run_bench

    config = load_config()
    task = load_task(args.task)
    path = builtin(task.name)
    inputs = [i["input"] for i in read_jsonl(path)] if path else [e.input for e in task.examples]
    inputs = (inputs * args.items)[: args.items]
    result = run_bench(
        args.model or config.models.small, config.runtime, task, inputs, _progress("items"), not args.no_adapter
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<38} {shown}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from slm_desk.contract.tasks import load_task
    from slm_desk.desk import Desk
    from slm_desk.errors import UsageError
    from slm_desk.learn import distill

    desk = Desk()
    if args.target[0] == "export":
        if len(args.target) != 2 or not args.out:
            raise UsageError("distill export needs a task and --out", "slm-desk distill export TASK --out DIR")
        try:
            result = distill.export(desk.store, load_task(args.target[1]), Path(args.out), args.examples, args.holdout)
        except ValueError as exc:
            raise UsageError(str(exc), "accept or correct distilled items first: slm-desk review") from exc
        print(json.dumps(result, indent=2))
        return 0
    task = load_task(args.target[0])
    if not args.inputs:
        raise UsageError("distill needs --inputs FILE (one raw input per line)", "see `slm-desk distill --help`")
    inputs = [line.strip() for line in Path(args.inputs).read_text(encoding="utf-8").splitlines() if line.strip()]
    teacher = desk.teacher(task, args.teacher, args.teacher_model)
    print(f"asking {teacher.backend.where} to label {len(inputs)} inputs for {task.name}", file=sys.stderr)
    counts = distill.label_inputs(teacher, inputs, desk.store, _progress("labelled"))
    print(
        f"{counts['valid']} valid, {counts['flagged']} flagged (failed validation); "
        f"all queued for review: slm-desk review --task {task.name}"
    )
    return 0
