"""How fast review teaches: route-ticket's head trained on the labels a scripted reviewer gives, in the review
queue's teaching order against arrival order, scored on the built-in eval set after each checkpoint.

    .venv/bin/python scripts/learning_curve.py [--labels 30,50,100,200,400] [--stream 4000] [--seeds 3]

The reviewer answers from the gold labels of banking77 queries (the route-ticket pool `teach_data.py` builds
from ../shared/data, held apart from the eval set). Arrival order labels the stream as it comes. Teaching order
starts the same way (with no head there is nothing to order by), then, at each checkpoint, trains the head on
what was labelled so far and labels next what `review.teaching_order` puts first among the rest of the stream:
high-risk answers, then the least confident. The head needs 30 labels to exist at all, so the curve starts at
30. No teacher pre-labels here: with a teacher the queue would also put head/teacher disagreements first.
Section 7 of scripts/benchmark.py runs this.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slm_desk.contract.tasks import Task, load_task  # noqa: E402
from slm_desk.data import review  # noqa: E402
from slm_desk.data.evalset import builtin, read_jsonl  # noqa: E402
from slm_desk.learn import training  # noqa: E402

CHECKPOINTS = [30, 50, 75, 100, 150, 200, 300, 400, 600, 800]


def accuracy(trained: training.Trained, gold: list[dict[str, Any]]) -> float:
    answers = trained.head.predict([g["input"] for g in gold])
    return sum(output == g["output"] for (output, _), g in zip(answers, gold, strict=True)) / len(gold)


def next_in_teaching_order(task: Task, trained: training.Trained, rest: list[dict[str, Any]], n: int) -> list[int]:
    """Indexes into `rest` of the `n` items the review queue would show first, scored by the current head."""
    answers = trained.head.predict([item["input"] for item in rest])
    queue = [
        {
            "id": i,
            "confidence": trained.profile.apply(min(probs.values())),
            "high_risk": bool(task.always_reviewed(output)),
            "disagrees": False,  # no second opinion without a teacher
        }
        for i, (output, probs) in enumerate(answers)
    ]
    return [item["id"] for item in review.teaching_order(queue)[:n]]


def curve(
    task: Task, stream: list[dict[str, Any]], gold: list[dict[str, Any]], checkpoints: list[int], teach: bool
) -> list[float]:
    labelled: list[dict[str, Any]] = []
    rest = list(stream)
    scores = []
    trained: training.Trained | None = None
    for target in checkpoints:
        wanted = target - len(labelled)
        if teach and trained is not None:
            picked = set(next_in_teaching_order(task, trained, rest, wanted))
            labelled += [item for i, item in enumerate(rest) if i in picked]
            rest = [item for i, item in enumerate(rest) if i not in picked]
        else:
            labelled += rest[:wanted]
            rest = rest[wanted:]
        trained = training.train(task, labelled)
        scores.append(accuracy(trained, gold))
    return scores


def run(pool: Path, checkpoints: list[int], stream_size: int, seeds: int) -> dict[str, list[float]]:
    task = load_task("route-ticket")
    everything = read_jsonl(pool)
    gold = read_jsonl(builtin("route-ticket"))  # type: ignore[arg-type]
    runs: dict[str, list[list[float]]] = {"arrival": [], "teaching": []}
    for seed in range(seeds):
        stream = random.Random(seed).sample(everything, stream_size)
        for order in runs:
            runs[order].append(curve(task, stream, gold, checkpoints, teach=order == "teaching"))
    return {order: [statistics.mean(column) for column in zip(*rows, strict=True)] for order, rows in runs.items()}


def labels_to_reach(points: list[int], scores: list[float], level: float) -> int | None:
    return next((n for n, score in zip(points, scores, strict=True) if score >= level), None)


def report(pool: Path, checkpoints: list[int], stream_size: int, seeds: int) -> None:
    started = time.perf_counter()
    mean = run(pool, checkpoints, stream_size, seeds)
    print(
        f"\n7. learning curve: route-ticket's head after N reviewed labels, exact match on the built-in eval set "
        f"(mean of {seeds} shuffles of a {stream_size:,}-query stream; {time.perf_counter() - started:.0f} s)"
    )
    print(f"{'labels':>8} " + " ".join(f"{n:>7}" for n in checkpoints))
    for order, scores in mean.items():
        print(f"{order:>8} " + " ".join(f"{s:>7.1%}" for s in scores))
    for n, arrival in zip(checkpoints, mean["arrival"], strict=True):
        reached = labels_to_reach(checkpoints, mean["teaching"], arrival)
        said = f"{reached} labels" if reached is not None else "not within the checkpoints"
        print(f"  arrival's {arrival:.1%} at {n} labels: teaching order reaches it with {said}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default=",".join(map(str, CHECKPOINTS)), help="checkpoints: labels so far")
    parser.add_argument("--stream", type=int, default=4000, help="unlabelled queries the reviewer works through")
    parser.add_argument("--seeds", type=int, default=3, help="shuffles of the stream to average over")
    parser.add_argument("--pool", type=Path, help="a route-ticket pool (default: built by teach_data.py)")
    args = parser.parse_args()
    pool = args.pool
    if pool is None:
        folder = Path(tempfile.mkdtemp(prefix="slm-desk-curve-"))
        subprocess.run([sys.executable, str(ROOT / "scripts" / "teach_data.py"), str(folder)], check=True)
        pool = folder / "route-ticket.pool.jsonl"
    report(pool, [int(n) for n in args.labels.split(",")], args.stream, args.seeds)


if __name__ == "__main__":
    main()
