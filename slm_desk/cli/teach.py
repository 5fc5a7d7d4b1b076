"""`slm-desk examples` and `slm-desk train`: teach a task from labelled examples, kept apart from its eval data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES_HELP = """\
A task's example pool: labelled {"input", "output"} items that teach it. For each input the most similar pool
items become the model's few-shot turns, and `slm-desk train` fits a label head on them. People's accepted or
corrected reviews join the pool by themselves. `eval` and `calibrate` drop gold items that are in the pool.

  slm-desk examples add route-ticket labelled.jsonl    # each line checked against the task; bad lines named
  slm-desk examples list route-ticket [--json]
  slm-desk examples rm route-ticket 12 13 | --all
  slm-desk examples export route-ticket > pool.jsonl
"""

TRAIN_HELP = """\
Fit the label head of a label task (every output field a label) on its example pool: logistic regression over
TF-IDF word and character n-grams. A fifth of the pool is held out to calibrate it: the head's answer is
accepted without running the LLM only when its calibrated probability clears the label's precision target
(a high-risk label is never accepted automatically). Everything else goes to the LLM as before.

  slm-desk examples add route-ticket labelled.jsonl && slm-desk train route-ticket
"""


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ex = commands.add_parser(
        "examples",
        help="a task's example pool: add, list, rm, export labelled examples",
        description=EXAMPLES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("action", choices=["add", "list", "rm", "export"], help="what to do with the pool")
    ex.add_argument("task", help="task name")
    ex.add_argument("rest", nargs="*", metavar="FILE|ID", help="add: JSONL files; rm: pool item ids")
    ex.add_argument("--all", action="store_true", help="rm: every item of this task version")
    ex.add_argument("--json", action="store_true", help="list: as JSON")
    ex.set_defaults(handler=cmd_examples)

    train = commands.add_parser(
        "train",
        help="fit a task's label head on its example pool (answers confident cases without the LLM)",
        description=TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("task", help="a label task, e.g. route-ticket")
    train.add_argument("--json", action="store_true", help="print the training report as JSON")
    train.set_defaults(handler=cmd_train)


def cmd_examples(args: argparse.Namespace) -> int:
    from slm_desk import locations, pool
    from slm_desk.errors import UsageError
    from slm_desk.store import Store
    from slm_desk.tasks import load_task

    task = load_task(args.task)
    store = Store(locations.history_db())
    try:
        if args.action == "add":
            if not args.rest:
                raise UsageError("examples add needs a JSONL file", f"slm-desk examples add {task.name} FILE.jsonl")
            for name in args.rest:
                report = pool.add_file(store, task, Path(name))
                for problem in report.skipped:
                    print(f"skipped {problem}", file=sys.stderr)
                print(
                    f"{name}: {report.added} added, {report.updated} updated, {len(report.skipped)} skipped; "
                    f"{task.name} v{task.version} pool: {len(store.pool(task.name, task.version))} items",
                    file=sys.stderr,
                )
            return 0
        items = store.pool(task.name, task.version)
        if args.action == "list":
            if args.json:
                print(json.dumps(items, indent=2, ensure_ascii=False))
            else:
                for item in items:
                    text = item["input"].replace("\n", " ")
                    output = json.dumps(item["output"], ensure_ascii=False)
                    print(f"{item['id']:>6}  {text[:60]:<60}  {output[:50]}")
            print(f"{len(items)} items in {task.name} v{task.version}'s pool", file=sys.stderr)
        elif args.action == "export":
            for item in items:
                print(json.dumps({"input": item["input"], "output": item["output"]}, ensure_ascii=False))
            print(f"{len(items)} items", file=sys.stderr)
        else:
            if not args.all and not args.rest:
                raise UsageError("examples rm needs item ids or --all", f"see `slm-desk examples list {task.name}`")
            try:
                ids = None if args.all else [int(i) for i in args.rest]
            except ValueError as exc:
                raise UsageError(f"not an item id: {exc}", "ids are the numbers `examples list` shows") from exc
            removed = store.remove_from_pool(task.name, task.version, ids)
            print(f"removed {removed} item{'s' if removed != 1 else ''}", file=sys.stderr)
        return 0
    finally:
        store.close()


def cmd_train(args: argparse.Namespace) -> int:
    from slm_desk import head, locations
    from slm_desk.store import Store
    from slm_desk.tasks import load_task

    task = load_task(args.task)
    store = Store(locations.history_db())
    try:
        items = store.pool(task.name, task.version)
        print(f"training {task.name} v{task.version}'s label head on {len(items)} pool items", file=sys.stderr)
        trained, profile, report = head.train(task, items)
        head.save(store, trained, profile, report)
    finally:
        store.close()
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    precision = "-" if report.heldout_accepted_precision is None else f"{report.heldout_accepted_precision:.1%}"
    print(
        f"{task.name} v{task.version}: trained on {report.n_train}, calibrated on {report.n_heldout} held out "
        f"in {report.train_seconds:.1f} s\n"
        f"  held-out accuracy {report.heldout_accuracy:.1%}; it would answer {report.heldout_accept_rate:.1%} "
        f"without the LLM, {precision} of those right"
    )
    for group, rule in profile.thresholds.items():
        print(f"  {group:<36} {rule.risk:<6} target {rule.target:.0%}  n={rule.n:<4} {rule.note}")
    return 0
