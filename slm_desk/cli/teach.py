"""`slm-desk examples` and `slm-desk train`: teach a task from labelled examples, kept apart from its eval data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slm_desk import exit_codes

EXAMPLES_HELP = """\
A task's example pool: labelled {"input", "output"} items that teach it. For each input the most similar pool
items become the model's few-shot turns, and `slm-desk train` fits a head on them. People's accepted or
corrected reviews join the pool by themselves. `eval` and `calibrate` drop gold items that are in the pool.

  slm-desk examples add route-ticket labelled.jsonl    # each line checked against the task; bad lines named
  slm-desk examples list route-ticket [--json]
  slm-desk examples rm route-ticket 12 13 | --all
  slm-desk examples export route-ticket > pool.jsonl
"""

TRAIN_HELP = """\
Fit the head of TASK on its example pool: a logistic regression per label field (TF-IDF word and character
n-grams, and the input's sentence embedding where that measures better) and, for fields the task copies
verbatim from the input, a linear-chain CRF over the input's tokens.
A task gets a head when every output field is one of the two (route-ticket, extract-booking, extract-ticket,
guard). The head is calibrated out of fold (each fold predicted by a head fitted on the others): its answer is
accepted without any LLM only when its calibrated confidence clears the label's precision target (a high-risk
label is never accepted automatically).

Then the next tier (the LLM with retrieved examples, or the task's tuned adapter) answers a sample of the
held-out items the head would hand on (not accepted, not high-risk): only there can its answer change what is
shown. It runs within a time budget train states before it starts (--budget, default the head's own fit time,
at least a minute), on up to --compare N items (default 100; 0 skips it). A head that accepts 95 % of its pool
out of fold is not compared unless --compare N is given. Per band of the head's confidence, the head hands its
answer on only where the LLM was measured more accurate; elsewhere the head's answer stands and goes to review
(or escalation). What the LLM got right is also its calibration for this task. train prints the frontier it
measured: the head alone, head then LLM, the LLM alone (on how many LLM answers each stands).

Label features (--features): with an embedding model ([models] embedding, all-MiniLM-L6-v2 by default) the
label models are fitted on TF-IDF alone and on TF-IDF beside the sentence embedding, both measured out of fold,
and the more accurate is kept (TF-IDF, thousands of inputs a second, unless embeddings win by more than half a
point; they cost a few ms an input). train prints both with their ms per item. An input unlike every pool item
(less similar to its nearest one than 96 % of the pool's own accepted items are) is never accepted: it goes to
review, and the reason says so.

Text in the input's own words (a task's `compress` fields: rewrite-query, title-bug-report): each input word is
kept or dropped. auto measures the tagger on inner folds reading nothing more, each word's static vector (a lookup
in the encoder's table) and beside it each word as the encoder's first 2 layers read it in the input, and keeps
the best; the last runs those layers on every input, once, for the novelty rule too (rewrite-query: token F1 0.565
at about 400 inputs a second; --features tfidf keeps the static vectors: 0.543 at about 1,300 a second). On the
same folds it measures adding the common answer words an input lacks (a bug title's "fix", "support", "S3A";
never a number), with its keep rule, and adds them only where that scores better.

  slm-desk examples add route-ticket labelled.jsonl && slm-desk train route-ticket
  slm-desk train extract-booking --compare 0      # the head alone: no LLM measured, the LLM never answers
  slm-desk train route-ticket --features tfidf    # the fast head, whatever embeddings would gain
"""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        help="fit a task's head on its example pool and measure where the LLM is better than it",
        description=TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "task", help="a task whose fields are labels, verbatim spans or text kept from the input, e.g. route-ticket"
    )
    train.add_argument(
        "--compare",
        type=int,
        default=None,
        metavar="N",
        help="held-out items the head would hand on that the next tier answers (default 100, none when the head "
        "accepts 95%% of its pool; 0 skips it)",
    )
    train.add_argument(
        "--budget", type=float, metavar="SECONDS", help="time for the comparison (default: the head's fit time, >= 60)"
    )
    train.add_argument("--model", "-m", metavar="ID", help="the next tier's model (default: config [models] small)")
    train.add_argument("--no-adapter", action="store_true", help="measure the model without the task's adapter")
    train.add_argument(
        "--features",
        choices=["auto", "tfidf", "embeddings"],
        default="auto",
        help="auto measures label features with and without sentence embeddings, and a text tagger's words alone and"
        " in context, and keeps the better; tfidf never runs the encoder when answering (fast, the static word"
        " vectors stay); embeddings forces them for the labels",
    )
    train.add_argument("--json", action="store_true", help="print the training report, policy and frontier as JSON")
    train.set_defaults(handler=cmd_train)


def cmd_examples(args: argparse.Namespace) -> int:
    from slm_desk import locations
    from slm_desk.contract.tasks import load_task
    from slm_desk.data import pool
    from slm_desk.data.store import Store
    from slm_desk.errors import UsageError

    task = load_task(args.task)
    store = Store(locations.history_db())
    try:
        if args.action == "add":
            if not args.rest:
                raise UsageError("examples add needs a JSONL file", f"slm-desk examples add {task.name} FILE.jsonl")
            taken = rejected = 0
            for name in args.rest:
                report = pool.add_file(store, task, Path(name))
                for problem in report.skipped:
                    print(f"skipped {problem}", file=sys.stderr)
                for conflict in report.conflicts:
                    print(f"conflict {conflict}", file=sys.stderr)
                print(
                    f"{name}: {report.summary}; "
                    f"{task.name} v{task.version} pool: {len(store.pool(task.name, task.version))} items",
                    file=sys.stderr,
                )
                taken += report.added + report.updated + report.unchanged
                rejected += len(report.skipped)
            if taken:
                _head_is_stale(store, task)
            if rejected and not taken:
                raise UsageError(
                    f"no line fitted {task.name}'s contract: nothing was added",
                    f"each line needs an input and an output that passes the task; `slm-desk tasks show {task.name}`",
                )
            if rejected:  # the rest went in; the exit code says that not everything did
                print(
                    f"slm-desk: {rejected} line{'s' if rejected != 1 else ''} skipped (named above): fix "
                    f"{'them' if rejected != 1 else 'it'} and add the file again (lines already in the pool are "
                    "counted as unchanged)",
                    file=sys.stderr,
                )
                return exit_codes.USAGE
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
            if removed:
                _head_is_stale(store, task)
        return 0
    finally:
        store.close()


def _head_is_stale(store: Any, task: Any) -> None:
    if store.head_trained_at(task.name, task.version) is None:
        return
    if not store.pool_signature(task.name, task.version)[0]:
        print(
            f"the pool is empty: {task.name}'s head is no longer used (train it again on new examples)", file=sys.stderr
        )
    else:
        print(
            f"{task.name}'s head was trained before this change: `slm-desk train {task.name}` retrains it",
            file=sys.stderr,
        )


def cmd_train(args: argparse.Namespace) -> int:
    from slm_desk.cli.progress import ItemProgress
    from slm_desk.contract.tasks import load_task
    from slm_desk.desk import Desk
    from slm_desk.errors import UsageError

    if args.compare is not None and args.compare < 0:
        raise UsageError(f"--compare {args.compare} is not a count", "pass --compare 0 or more")
    if args.budget is not None and args.budget <= 0:
        raise UsageError(f"--budget {args.budget} is not a time", "pass a number of seconds above 0")
    task = load_task(args.task)
    desk = Desk()
    bars: list[ItemProgress] = []

    def answered(done: int, total: int) -> None:  # the bar starts with the first answer, not with the training
        if not bars:
            bars.append(ItemProgress(f"answered by {desk.model_id(None if args.no_adapter else task, args.model)}"))
        bars[0](done, total)

    try:
        training = desk.train(
            task,
            args.compare,
            args.model,
            adapter=not args.no_adapter,
            said=lambda line: print(line, file=sys.stderr, flush=True),
            answered=answered,
            features=args.features,
            budget_s=args.budget,
        )
    finally:
        for bar in bars:
            bar.finish()
        desk.close()
    trained, policy, measured_profile, interrupted = (
        training.trained,
        training.policy,
        training.model_profile,
        training.interrupted,
    )
    if interrupted:
        print(
            "comparison interrupted: the head is saved and answers alone (its unsure answers go to review)",
            file=sys.stderr,
        )
    if args.json:
        print(
            json.dumps(
                {
                    **trained.report.model_dump(),
                    "thresholds": {g: r.model_dump() for g, r in trained.profile.thresholds.items()},
                    "policy": policy.model_dump(),
                    "model_profile": measured_profile.model_dump() if measured_profile else None,
                },
                indent=2,
            )
        )
        return 0
    print(render_training(task, trained, policy, measured_profile, "interrupted" if interrupted else "--compare 0"))
    return 0


def _features_lines(r: Any) -> list[str]:
    """Which label features were measured and kept, the novelty rule, and train's warnings."""
    lines = []
    if r.compared:
        lines.append(f"  {'label features (out of fold)':<44} {'accuracy':>8} {'accepted':>9} {'ms/item':>9}")
        for row in r.compared:
            kept = "  <- kept" if row.features == r.label_features else ""
            lines.append(
                f"  {row.features:<44} {row.accuracy:>8.1%} {row.accept_rate:>9.1%} {row.ms_per_item:>9.2f}{kept}"
            )
    if r.embedding_model and r.without_encoder_ms is not None:
        lost = ", and its text tagger reads no words in context" if r.in_context else ""
        lines.append(
            f"  (without the encoder: `slm-desk train {r.task} --features tfidf`, {r.without_encoder_ms:.2f} ms/item;"
            f" its novelty rule then reads TF-IDF, which catches about half as many off-topic inputs{lost})"
        )
    elif r.embeddings_note and "label" in r.field_kinds.values():
        lines.append(f"  label features: TF-IDF alone; sentence embeddings were not measured: {r.embeddings_note}")
    if r.novelty_threshold is not None:
        space = f"{r.embedding_model} embedding" if r.embedding_model else "TF-IDF"
        if r.novelty_space == "context":
            space = "words-in-context"  # the mean of the words the text tagger read, one encoder pass for both
        held = "" if r.novelty_held_back is None else f", {r.novelty_held_back:.1%} of its accepted items out of fold"
        lines.append(
            f"  novelty: an input whose {space} similarity to the nearest pool item is below "
            f"{r.novelty_threshold:.2f} goes to review (held back{held})"
        )
    lines += [f"  warning: {w}" for w in r.warnings]
    return lines


def render_training(task: Any, trained: Any, policy: Any, model_profile: Any, unmeasured: str = "--compare 0") -> str:
    from slm_desk.contract.calibration import items_needed

    r, profile = trained.report, trained.profile
    precision = "-" if r.heldout_accepted_precision is None else f"{r.heldout_accepted_precision:.1%}"
    kinds = ", ".join(f"{f} ({k})" for f, k in r.field_kinds.items())
    lines = [
        f"{task.name} v{task.version}: head for {kinds}, trained on {r.n_train} items in {r.train_seconds:.1f} s,"
        f" calibrated on {r.n_heldout} out-of-fold predictions ({r.folds} folds)"
        + (f"; {r.skipped} items skipped (a span value not in its input)" if r.skipped else ""),
        f"  held-out accuracy {r.heldout_accuracy:.1%}; it would answer {r.heldout_accept_rate:.1%} without any LLM,"
        f" {precision} of those right",
    ]
    lines += _features_lines(r)
    if r.heldout_accuracy < 0.7:
        lines.append(
            f"  a useful head usually needs a few hundred examples, at least 30-50 per label: add more with "
            f"slm-desk examples add {task.name} FILE.jsonl"
        )
    groups: dict[str, list[bool]] = {}
    for s in trained.scored:
        for g, _ in task.groups(s.output):
            groups.setdefault(g, []).append(s.correct)
    for group, rule in profile.thresholds.items():
        advice = ""
        if rule.threshold is None and not rule.always_review and groups.get(group):
            right = sum(groups[group]) / len(groups[group])
            needed = items_needed(right, rule.target)
            advice = (
                f"; about {max(0, needed - rule.n)} more labelled examples of {group} would support the target"
                if needed is not None
                else f"; the head is right {right:.0%} of the time on {group}: more and clearer examples of it and"
                " of the labels it is confused with must raise that above the target first"
            )
        lines.append(f"  {group:<36} {rule.risk:<6} target {rule.target:.0%}  n={rule.n:<5} {rule.note}{advice}")
    if policy.model:
        lines.append(f"  next tier {policy.model}, measured on {policy.measured} held-out items:")
        for band in policy.bands:
            if band.items:
                verdict = "hand on to the LLM" if band.defer else "the head's answer stands"
                lines.append(
                    f"    band {band.label}: {band.items:>5} unsure items, {verdict}: {band.why(policy.model)}"
                )
        if model_profile is None:
            lines.append("    (too few valid answers to calibrate the LLM tier: it never auto-accepts here)")
    elif policy.note:
        lines.append(f"  {policy.note}; the head's unsure answers go to review, never to the LLM")
    else:
        lines.append(
            f"  the next tier was not measured ({unmeasured}): the head's unsure answers go to review, never to the LLM"
        )

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    lines.append(f"  {'frontier':<44} {'accuracy':>8} {'accepted precision':>19} {'accepted':>9} {'ms/item':>9}")
    for row in policy.frontier:
        ms = "-" if row.ms_per_item is None else f"{row.ms_per_item:.2f}"
        cover = "" if row.coverage >= 0.999 else f"  (on {row.coverage:.0%} of items)"
        if row.answers is not None:
            cover += f"  ({row.answers} LLM answers)"
        lines.append(
            f"  {row.setup:<44} {pct(row.accuracy):>8} {pct(row.accepted_precision):>19} {pct(row.accept_rate):>9}"
            f" {ms:>9}{cover}"
        )
    return "\n".join(lines)
