"""`slm-desk tune` and `slm-desk adapters`: fine-tune the small model on a task, and manage what that wrote."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

TUNE_HELP = """\
Fine-tune the small model on a task's example pool (or --data FILE.jsonl) and install the result as a LoRA
adapter that `run`, `eval`, `bench`, `calibrate` and the app then load for that task and model by themselves
(--no-adapter turns it off). Training reads the base weights from the installed GGUF, prompts each example
exactly as `run` prompts a tuned model (instructions and input, no few-shot turns) and learns the answer tokens.
A held-out share of the examples is never trained on: at the end it is answered with and without the adapter
and both scores are printed. Uses CUDA or Apple's MPS when torch sees one, else the CPU.

Needs the optional extra: pip install 'slm-desk[tune]' (or scripts/install.sh --tune).

  slm-desk examples add extract-booking labelled.jsonl
  slm-desk tune extract-booking --epochs 2 --limit 1000
  slm-desk eval extract-booking                  # the adapter is used; --no-adapter for the base model

Ctrl-C stops training and writes nothing (an earlier adapter stays as it was).
"""

ADAPTERS_HELP = """\
Adapters written by `slm-desk tune`, one per task and base model.

  slm-desk adapters                              list them, with their held-out scores
  slm-desk adapters rm extract-booking [--model ID]
"""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = commands.add_parser(
        "tune",
        help="fine-tune the small model on a task's examples (writes a LoRA adapter)",
        description=TUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("task", help="task name")
    tune.add_argument("--model", "-m", metavar="ID", help="base model (default: config [models] small)")
    tune.add_argument("--data", metavar="FILE", help="labelled JSONL to train on instead of the example pool")
    tune.add_argument("--epochs", type=int, default=2, metavar="N", help="passes over the examples (default 2)")
    tune.add_argument("--rank", type=int, default=8, metavar="R", help="LoRA rank (default 8; alpha is 2R)")
    tune.add_argument("--limit", type=int, metavar="N", help="train on N examples at most")
    tune.add_argument(
        "--holdout", type=int, metavar="N", help="examples set apart to judge the adapter (default 10 %%, at most 100)"
    )
    tune.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR", help="AdamW step size (1e-3)")
    tune.add_argument("--batch-size", type=int, default=8, metavar="N", help="examples per step (default 8)")
    tune.add_argument("--json", action="store_true", help="print the report as JSON")
    tune.set_defaults(handler=cmd_tune)

    ad = commands.add_parser(
        "adapters",
        help="list or remove the fine-tuned adapters",
        description=ADAPTERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ad.add_argument("action", nargs="?", choices=["list", "rm"], default="list", help="list (default) or rm")
    ad.add_argument("task", nargs="?", help="rm: the task whose adapter to remove")
    ad.add_argument("--model", "-m", metavar="ID", help="rm: the base model (default: config [models] small)")
    ad.add_argument("--json", action="store_true", help="list: as JSON")
    ad.set_defaults(handler=cmd_adapters)


def _positive(name: str, value: int | float | None) -> None:
    from slm_desk.errors import UsageError

    if value is not None and value <= 0:
        raise UsageError(f"--{name} must be positive, not {value}", f"pass --{name} with a number above 0")


def _items(args: argparse.Namespace, task: Any) -> list[tuple[str, dict[str, Any]]]:
    from pathlib import Path

    from slm_desk import locations
    from slm_desk.data import pool
    from slm_desk.data.store import Store
    from slm_desk.errors import UsageError

    if args.data:
        items, skipped = pool.read_file(task, Path(args.data))
        for line in skipped[:10]:
            print(f"skipped {line}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"... and {len(skipped) - 10} more bad lines", file=sys.stderr)
        return items
    store = Store(locations.history_db())
    try:
        items = [(item["input"], item["output"]) for item in store.pool(task.name, task.version)]
    finally:
        store.close()
    if not items:
        raise UsageError(
            f"{task.name} v{task.version} has no labelled examples to learn from",
            f"add some: slm-desk examples add {task.name} FILE.jsonl (or pass --data FILE.jsonl)",
        )
    return items


def cmd_tune(args: argparse.Namespace) -> int:
    from slm_desk.cli.progress import StepProgress
    from slm_desk.contract.tasks import load_task
    from slm_desk.data.catalog import resolve_model
    from slm_desk.data.config import load_config
    from slm_desk.learn import tune

    for name in ("epochs", "rank", "limit", "batch_size", "learning_rate"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.holdout is not None and args.holdout < 0:
        _positive("holdout", args.holdout)
    tune.require_extra()  # before any work: say what to install
    config = load_config()
    task = load_task(args.task)
    model = resolve_model(args.model or config.models.small)
    items = _items(args, task)
    holdout = args.holdout if args.holdout is not None else min(100, len(items) // 10)
    settings = tune.Settings(args.epochs, args.rank, args.learning_rate, args.batch_size)
    bar = StepProgress(task.name)
    print(
        f"tuning {model.id} on {task.name} v{task.version}: {len(items)} examples, {holdout} held out",
        file=sys.stderr,
    )
    try:
        tuned = tune.tune(
            task,
            model,
            items,
            settings,
            holdout,
            args.limit,
            config.runtime,
            on_phase=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
            on_step=bar,
        )
    except KeyboardInterrupt:
        bar.finish()
        print("slm-desk: tune stopped; no adapter was written (an earlier one is unchanged)", file=sys.stderr)
        return 130
    bar.finish()
    print(f"wrote {tuned.path} ({tuned.seconds:,.0f} s on {tuned.device})", file=sys.stderr)
    report = dict(tuned.meta["report"], examples=tuned.examples, device=tuned.device, held_out=len(tuned.held_out))
    if tuned.held_out:
        try:
            report.update(_before_after(task, model.id, tuned))
        except KeyboardInterrupt:
            print("slm-desk: stopped; the adapter is installed, the held-out comparison was skipped", file=sys.stderr)
            return 130
        tune.record(tuned, {k: report[k] for k in ("held_out", "before", "after")})
    print(json.dumps(report, indent=2) if args.json else _render(report))
    return 0


def _before_after(task: Any, model_id: str, tuned: Any) -> dict[str, Any]:
    """The held-out items answered by the base model as `run --no-adapter` prompts it (static few-shot prompt),
    then with the adapter. Neither uses the pool's head or retrieval, so the two differ by the tuning alone."""
    from slm_desk.desk import Desk

    items = [{"input": text, "output": output} for text, output in tuned.held_out]
    desk = Desk()
    scores = {}
    try:
        for name, adapter in (("before", False), ("after", True)):
            print(f"  answering {len(items)} held-out examples {name} tuning", file=sys.stderr, flush=True)
            result = desk.evaluate(task, items, model_id, learned=False, adapter=adapter)
            scores[name] = {
                "accuracy": result["accuracy"],
                "validity": result["validity_after_retry"],
                "latency_ms_p50": result["latency_ms_p50"],
            }
    finally:
        desk.close()
    return scores


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _render(report: dict[str, Any]) -> str:
    lines = [
        f"trained on {report['examples']} examples, {report['epochs']} epoch(s), "
        f"final loss {report['final_loss']:.3f}, "
        f"{report['seconds']:,.0f} s on {report['device']}"
    ]
    if "before" in report:
        lines.append(f"held out ({report['held_out']} examples, never trained on):")
        lines.append(f"  {'':<8} {'exact':>8} {'valid':>8} {'p50 ms':>8}")
        for name in ("before", "after"):
            s = report[name]
            lines.append(
                f"  {name:<8} {_pct(s['accuracy']):>8} {_pct(s['validity']):>8} {s['latency_ms_p50'] or 0:>8,.0f}"
            )
    return "\n".join(lines)


def cmd_adapters(args: argparse.Namespace) -> int:
    from slm_desk.data import adapters
    from slm_desk.data.config import load_config
    from slm_desk.errors import UsageError

    if args.action == "rm":
        if not args.task:
            raise UsageError("adapters rm needs a task", "slm-desk adapters rm TASK [--model ID]")
        model_id = args.model or load_config().models.small
        path = adapters.path_for(args.task, model_id)
        if not path.is_file():
            raise UsageError(f"there is no adapter for {args.task} on {model_id}", "see `slm-desk adapters`")
        path.unlink()
        print(f"removed {path}", file=sys.stderr)
        return 0
    rows = []
    broken = []
    for adapter in adapters.scan():
        if isinstance(adapter, UsageError):
            broken.append(adapter)
            continue
        report = adapter.report
        row: dict[str, Any] = {
            "task": adapter.task,
            "task_version": adapter.task_version,
            "base_model": adapter.base_model,
            "examples": adapter.examples,
            "rank": adapter.rank,
            "size_bytes": adapter.size_bytes,
            "created_at": adapter.created_at,
            "held_out_before": (report.get("before") or {}).get("accuracy"),
            "held_out_after": (report.get("after") or {}).get("accuracy"),
            "status": _status(adapter),
            "path": str(adapter.path),
        }
        rows.append(row)
    if args.json:
        print(json.dumps(rows + [{"status": f"unreadable: {b.message}", "hint": b.hint} for b in broken], indent=2))
        return 0
    for problem in broken:
        print(f"unreadable: {problem.message}\n  hint: {problem.hint}", file=sys.stderr)
    if not rows:
        if not broken:
            print("no adapters yet: `slm-desk tune TASK` writes one", file=sys.stderr)
        return 0
    print(f"{'TASK':<18} {'MODEL':<16} {'EXAMPLES':>8} {'RANK':>4} {'HELD-OUT EXACT':>16}  STATUS")
    for r in rows:
        scores = f"{_pct(r['held_out_before'])} → {_pct(r['held_out_after'])}"
        print(
            f"{r['task'] + ' v' + str(r['task_version']):<18} {r['base_model']:<16} {r['examples']:>8} "
            f"{r['rank']:>4} {scores:>16}  {r['status']}"
        )
    return 0


def _status(adapter: Any) -> str:
    """'in use', or why run refuses it."""
    from slm_desk.contract.tasks import load_task
    from slm_desk.data import adapters
    from slm_desk.data.catalog import resolve_model
    from slm_desk.errors import SlmDeskError

    try:
        found = adapters.for_task(load_task(adapter.task), resolve_model(adapter.base_model))
    except adapters.AdapterMismatch as exc:
        return f"refused: {exc.message}"
    except SlmDeskError as exc:
        return f"unused: {exc.message}"
    return "in use" if found is not None else "unused"
