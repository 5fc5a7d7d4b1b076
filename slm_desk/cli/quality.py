"""`slm-desk calibrate`, `review` and `evalset`: measuring confidence, and the people who fix what it misses."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

CALIBRATE_HELP = """\
Run TASK on labelled examples, compare each answer with the gold output, and store a calibration profile for
this task version and model: reliability table, ECE, Brier score, a monotone recalibration map, and per label
the acceptance threshold that meets the task's risk target (e.g. 80 % precision for low-risk labels) with a
95 % upper confidence bound on the error rate. `run` applies the latest profile automatically.

--data is JSONL, one {"input": "...", "output": {...}} per line; without it the task's built-in eval set is
used (route-ticket and extract-booking have one).

examples:
  slm-desk calibrate route-ticket --limit 200
  slm-desk calibrate extract-ticket --data my-tickets.jsonl --json > report.json
"""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cal = commands.add_parser(
        "calibrate",
        help="measure and calibrate a task's confidence on labelled data",
        description=CALIBRATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cal.add_argument("task", help="task name (see `slm-desk tasks`)")
    cal.add_argument("--data", metavar="FILE", help="labelled JSONL (default: the task's built-in eval set)")
    cal.add_argument("--model", "-m", metavar="ID", help="model id (default: config [models] small)")
    cal.add_argument("--limit", type=int, metavar="N", help="use the first N examples only")
    cal.add_argument("--no-adapter", action="store_true", help="calibrate the model without the task's adapter")
    cal.add_argument(
        "--escalation",
        action="store_true",
        help="calibrate the [escalation] target (its valid answers are accepted only once measured)",
    )
    cal.add_argument("--json", action="store_true", help="print the profile as JSON")
    cal.set_defaults(handler=cmd_calibrate)

    review = commands.add_parser(
        "review",
        help="the human review queue: list, accept, correct, reject",
        description="Answers the policy did not accept wait here for a person.\n"
        "  slm-desk review                               list pending items\n"
        "  slm-desk review show ID                       one item in full\n"
        "  slm-desk review accept ID                     the shown answer is right\n"
        "  slm-desk review correct ID --output '{...}'   give the right answer (checked against the task)\n"
        "  slm-desk review reject ID                     no answer is right for this input\n"
        "Accepted and corrected answers join the task's eval set (`slm-desk evalset export TASK`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    review.add_argument(
        "action", nargs="?", choices=["show", "accept", "correct", "reject"], help="without one: list pending items"
    )
    review.add_argument("id", nargs="?", type=int, help="review item id (from the list)")
    review.add_argument("--output", metavar="JSON", help="with correct: the right answer")
    review.add_argument("--task", help="list one task's items only")
    review.add_argument("--json", action="store_true", help="print JSON")
    review.set_defaults(handler=cmd_review)

    evalset = commands.add_parser(
        "evalset",
        help="export a task's eval set (failures, escalations, corrections) as JSONL",
        description="slm-desk evalset export TASK [--gold-only] > TASK.jsonl\n\n"
        'Writes {"input", "output"} lines, the format calibrate and eval read. Labels from people (accepted or\n'
        "corrected reviews) win over the larger model's (escalations); --gold-only keeps people's labels only.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evalset.add_argument("action", choices=["export"], help="export: write the eval set to stdout")
    evalset.add_argument("task", help="task name")
    evalset.add_argument("--gold-only", action="store_true", help="people's labels only, not the larger model's")
    evalset.set_defaults(handler=cmd_evalset)


def _store() -> Any:
    from slm_desk import locations
    from slm_desk.data.store import Store

    return Store(locations.history_db())


def cmd_calibrate(args: argparse.Namespace) -> int:
    from slm_desk.contract.tasks import load_task
    from slm_desk.data.config import load_config
    from slm_desk.data.evalset import resolve_data
    from slm_desk.desk import Desk
    from slm_desk.errors import UsageError

    task = load_task(args.task)
    path = resolve_data(task.name, args.data)
    desk = Desk(load_config())
    items, dropped, _ = desk.calibration_items(task, path, args.limit)
    if dropped:
        print(
            f"dropped {dropped} items that are in {task.name}'s example pool (learned from, not judged)",
            file=sys.stderr,
        )
    if len(items) < 20:
        raise UsageError(f"{len(items)} labelled examples are too few to calibrate on", "give at least 20, better 200+")
    print(f"calibrating {task.name} v{task.version} on {len(items)} examples from {path}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 20) == 0 or done == total:
            print(f"  {done}/{total}", file=sys.stderr, flush=True)

    profile = desk.calibrate(
        task, items, args.model, adapter=not args.no_adapter, progress=progress, escalation=args.escalation
    )
    desk.close()
    if args.json:
        print(profile.model_dump_json(indent=2))
    else:
        print(render_profile(profile))
    return 0


def _bar(value: float | None, width: int = 30) -> str:
    if value is None:
        return " " * width
    filled = round(value * width)
    return "#" * filled + "." * (width - filled)


def render_profile(p: Any) -> str:
    lines = [
        f"{p.task} v{p.task_version} on {p.model}: {p.n_examples} examples, {p.n_valid} valid, "
        f"{p.accuracy:.1%} of valid answers fully right",
        "field accuracy: " + ", ".join(f"{f} {a:.1%}" for f, a in p.field_accuracy.items()),
        "",
        "reliability diagram (raw confidence; # = accuracy, | = where accuracy would equal confidence)",
    ]
    for b in p.reliability_raw:
        if not b.count:
            continue
        bar = list(_bar(b.accuracy))
        mid = min(int(((b.lower + b.upper) / 2) * 30), 29)
        bar[mid] = "|"
        lines.append(
            f"  {b.lower:.1f}-{b.upper:.1f}  n={b.count:<4} conf {b.mean_confidence:.2f}  "
            f"acc {b.accuracy:.2f}  {''.join(bar)}"
        )
    h = p.heldout
    lines += [
        "",
        f"ECE    raw {p.ece_raw:.3f}   held-out: raw {h['ece_raw']:.3f} -> recalibrated {h['ece_calibrated']:.3f}"
        f"   (n={h['n']})",
        f"Brier  raw {p.brier_raw:.3f}   held-out: raw {h['brier_raw']:.3f}"
        f" -> recalibrated {h['brier_calibrated']:.3f}",
        "",
        "acceptance thresholds (on recalibrated confidence):",
    ]
    for group, t in p.thresholds.items():
        lines.append(f"  {group:<36} {t.risk:<6} target {t.target:.0%}  n={t.n:<4} {t.note}")
    return "\n".join(lines)


def cmd_review(args: argparse.Namespace) -> int:
    from slm_desk.data import review
    from slm_desk.errors import UsageError

    store = _store()
    try:
        if args.action is None:
            items = review.pending(store, args.task)
            if args.json:
                print(json.dumps([_readable(i) for i in items], indent=2, ensure_ascii=False))
            else:
                for item in items:
                    text = item["input"].replace("\n", " ")
                    print(f"{item['id']:>5}  {item['task']:<16} {text[:50]:<50}  {item['reason'][:60]}")
                total = store.pending_count(args.task)
                shown = (
                    f"showing the first {len(items)} of {total} pending" if total > len(items) else f"{total} pending"
                )
                print(shown, file=sys.stderr)
            return 0
        if args.id is None:
            raise UsageError(f"review {args.action} needs an item id", "list them with `slm-desk review`")
        if args.action == "show":
            print(json.dumps(_readable(review.get(store, args.id)), indent=2, ensure_ascii=False))
        elif args.action == "accept":
            print(json.dumps(review.accept(store, args.id), ensure_ascii=False))
        elif args.action == "correct":
            if not args.output:
                raise UsageError("review correct needs --output '{...}'", "give the right answer as JSON")
            print(json.dumps(review.correct(store, args.id, args.output), ensure_ascii=False))
        else:
            review.reject(store, args.id)
            print(f"rejected {args.id}")
        return 0
    finally:
        store.close()


def cmd_evalset(args: argparse.Namespace) -> int:
    from slm_desk.contract.tasks import load_task
    from slm_desk.data import evalset

    load_task(args.task)  # an unknown task is a usage error, not an empty export
    store = _store()
    try:
        written = 0
        for item in evalset.export(store, args.task, include_teacher=not args.gold_only):
            print(json.dumps({"input": item["input"], "output": item["output"]}, ensure_ascii=False))
            written += 1
        counts = evalset.counts(store, args.task)
        waiting = counts.get("unlabelled", 0)
        print(
            f"{written} examples written; {waiting} failures still wait for a label in `slm-desk review`",
            file=sys.stderr,
        )
        return 0
    finally:
        store.close()


def _readable(item: dict[str, Any]) -> dict[str, Any]:
    """A review item with its candidate decoded: the answer object, or for an invalid answer the text the model
    wrote (stored as a JSON string; printed once more it would be encoded twice)."""
    candidate = json.loads(item["candidate"]) if item["candidate"] else None
    return {**item, "candidate": candidate, "candidate_valid": isinstance(candidate, dict)}
