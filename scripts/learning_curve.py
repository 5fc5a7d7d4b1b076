"""How fast review teaches: route-ticket's head trained on the labels a scripted reviewer gives, in the review
queue's teaching order against arrival order, for the TF-IDF head and the head that reads sentence embeddings,
scored on the built-in eval set after each checkpoint.

    .venv/bin/python scripts/learning_curve.py [--labels 30,50,100,200,400] [--stream 4000] [--seeds 3]
                                               [--heads tfidf,embeddings] [--teacher FILE.jsonl]

The reviewer answers from the gold labels of banking77 queries (the route-ticket pool `teach_data.py` builds
from ../shared/data, held apart from the eval set). Arrival order labels the stream as it comes. Teaching order
starts the same way (with no head there is nothing to order by), then, at each checkpoint, trains the head on
what was labelled so far and labels next what `review.teaching_order` puts first among the rest of the stream:
what the head is least sure of (the smallest margin between its two likeliest labels) and, for the embedding
head, not two inputs whose embeddings are nearly the same. The head needs 30 labels to exist at all, so the
curve starts at 30. With `--teacher` (a JSONL of {"input", "output"} a larger model gave for the stream's
queries), every queued item carries the teacher's label and the person only accepts or corrects it: the queue
then puts first the items where the head and the teacher disagree, as the Review screen does. Section 7 of
scripts/benchmark.py runs this.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slm_desk.contract.tasks import Task, load_task  # noqa: E402
from slm_desk.data import review  # noqa: E402
from slm_desk.data.evalset import builtin, read_jsonl  # noqa: E402
from slm_desk.learn import training  # noqa: E402

CHECKPOINTS = [30, 50, 75, 100, 150, 200, 300, 400, 600, 800]


class Vectors:
    """Every text's embedding from the bundled encoder, computed once for the whole run."""

    def __init__(self) -> None:
        from slm_desk.data.catalog import EMBEDDING_ID, resolve_model
        from slm_desk.data.config import RuntimeConfig
        from slm_desk.models.embedder import Embedder

        self.model = EMBEDDING_ID
        self.encoder = Embedder(resolve_model(EMBEDDING_ID), RuntimeConfig())
        self.known: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.known))
        if missing:
            self.known.update(zip(missing, self.encoder.embed(missing), strict=True))
        return np.vstack([self.known[t] for t in texts])

    def source(self) -> training.Embedding:
        return training.Embedding(self.model, self, self)


def predict(trained: training.Trained, texts: list[str], vectors: Vectors | None) -> list[tuple[dict, dict]]:
    return trained.head.predict(texts, vectors=vectors(texts) if trained.head.reads_embeddings and vectors else None)


def accuracy(trained: training.Trained, gold: list[dict[str, Any]], vectors: Vectors | None) -> float:
    answers = predict(trained, [g["input"] for g in gold], vectors)
    return sum(output == g["output"] for (output, _), g in zip(answers, gold, strict=True)) / len(gold)


def next_in_teaching_order(
    task: Task,
    trained: training.Trained,
    rest: list[dict[str, Any]],
    n: int,
    vectors: Vectors | None,
    teacher: dict[str, dict[str, Any]] | None,
) -> list[int]:
    """Indexes into `rest` of the `n` items the review queue would show first, scored by the current head, as
    `Desk.review_queue` scores them (the head's answer, its margin and, for an embedding head, the embedding)."""
    texts = [item["input"] for item in rest]
    embedded = vectors(texts) if vectors is not None and trained.head.reads_embeddings else None
    answers = trained.head.predict(texts, vectors=embedded)
    margins = trained.head.margins(texts, embedded)
    queue = []
    for i, ((output, probs), item) in enumerate(zip(answers, rest, strict=True)):
        shown = teacher.get(item["input"]) if teacher else None  # what the queue item holds: the teacher's label
        queue.append(
            {
                "id": i,
                "confidence": trained.profile.apply(min(probs.values())),
                "margin": margins[i],
                "vector": embedded[i] if embedded is not None else None,
                "high_risk": bool(task.always_reviewed(shown or output)),
                "disagrees": shown is not None and shown != output,
            }
        )
    return [item["id"] for item in review.teaching_order(queue)[:n]]


def curve(
    task: Task,
    stream: list[dict[str, Any]],
    gold: list[dict[str, Any]],
    checkpoints: list[int],
    teach: bool,
    vectors: Vectors | None,
    teacher: dict[str, dict[str, Any]] | None = None,
) -> list[float]:
    labelled: list[dict[str, Any]] = []
    rest = list(stream)
    scores = []
    trained: training.Trained | None = None
    choice: training.Choice = "embeddings" if vectors else "tfidf"
    source = vectors.source() if vectors else None
    for target in checkpoints:
        wanted = target - len(labelled)
        if teach and trained is not None:
            picked = set(next_in_teaching_order(task, trained, rest, wanted, vectors, teacher))
            labelled += [item for i, item in enumerate(rest) if i in picked]
            rest = [item for i, item in enumerate(rest) if i not in picked]
        else:
            labelled += rest[:wanted]
            rest = rest[wanted:]
        trained = training.train(task, labelled, embedding=source, choice=choice)
        scores.append(accuracy(trained, gold, vectors))
    return scores


def run(
    pool: Path,
    checkpoints: list[int],
    stream_size: int,
    seeds: int,
    heads: list[str],
    teacher: dict[str, dict[str, Any]] | None = None,
) -> dict[str, list[float]]:
    task = load_task("route-ticket")
    everything = read_jsonl(pool)
    if teacher:  # the stream is what the teacher labelled
        everything = [item for item in everything if item["input"] in teacher]
    gold = read_jsonl(builtin("route-ticket"))  # type: ignore[arg-type]
    vectors = Vectors() if "embeddings" in heads else None
    orders = ["arrival", "teaching"] + (["teacher"] if teacher else [])
    runs: dict[str, list[list[float]]] = {f"{h} {o}": [] for h in heads for o in orders}
    for seed in range(seeds):
        stream = random.Random(seed).sample(everything, min(stream_size, len(everything)))
        for h in heads:
            v = vectors if h == "embeddings" else None
            for o in orders:
                runs[f"{h} {o}"].append(
                    curve(task, stream, gold, checkpoints, o != "arrival", v, teacher if o == "teacher" else None)
                )
    return {name: [statistics.mean(column) for column in zip(*rows, strict=True)] for name, rows in runs.items()}


def labels_to_reach(points: list[int], scores: list[float], level: float) -> int | None:
    return next((n for n, score in zip(points, scores, strict=True) if score >= level), None)


def report(
    pool: Path,
    checkpoints: list[int],
    stream_size: int,
    seeds: int,
    heads: list[str],
    teacher: dict[str, dict[str, Any]] | None = None,
) -> None:
    started = time.perf_counter()
    mean = run(pool, checkpoints, stream_size, seeds, heads, teacher)
    print(
        f"\n7. learning curve: route-ticket's head after N reviewed labels, exact match on the built-in eval set "
        f"(mean of {seeds} shuffles of a {stream_size:,}-query stream; {time.perf_counter() - started:.0f} s)"
    )
    print(f"{'head, order':>22} " + " ".join(f"{n:>7}" for n in checkpoints))
    for name, scores in mean.items():
        print(f"{name:>22} " + " ".join(f"{s:>7.1%}" for s in scores))
    for level in (0.866, 0.90):
        for name, scores in mean.items():
            reached = labels_to_reach(checkpoints, scores, level)
            if reached is None:
                print(f"  {name} does not reach {level:.1%} within the checkpoints")
            else:
                print(f"  {name} reaches {level:.1%} with {reached} decisions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default=",".join(map(str, CHECKPOINTS)), help="checkpoints: labels so far")
    parser.add_argument("--stream", type=int, default=4000, help="unlabelled queries the reviewer works through")
    parser.add_argument("--seeds", type=int, default=3, help="shuffles of the stream to average over")
    parser.add_argument("--heads", default="tfidf,embeddings", help="which heads: tfidf, embeddings or both")
    parser.add_argument("--pool", type=Path, help="a route-ticket pool (default: built by teach_data.py)")
    parser.add_argument("--teacher", type=Path, help="a teacher's labels for the stream (JSONL of input, output)")
    args = parser.parse_args()
    pool = args.pool
    if pool is None:
        folder = Path(tempfile.mkdtemp(prefix="slm-desk-curve-"))
        subprocess.run([sys.executable, str(ROOT / "scripts" / "teach_data.py"), str(folder)], check=True)
        pool = folder / "route-ticket.pool.jsonl"
    teacher = None
    if args.teacher:
        teacher = {item["input"]: item["output"] for item in map(json.loads, args.teacher.read_text().splitlines())}
    checkpoints = [int(n) for n in args.labels.split(",")]
    report(pool, checkpoints, args.stream, args.seeds, args.heads.split(","), teacher)


if __name__ == "__main__":
    main()
