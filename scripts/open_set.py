"""What the head has never seen, measured the way open-set intent papers measure it: banking77's own 77 intents as
one task, whole intents held out of the pool, and how many of their queries the head accepts as a known intent.

    .venv/bin/python scripts/open_set.py [--held-out 12,38,58] [--seed 0]

For each count of held-out intents (12 of 77 leaves 84 % of them known, 38 about half, 58 a quarter, the ratios
the papers report), the intents are drawn at random; the queries of the known intents are split 80/20 into the
pool and a test set. `slm-desk train` (as a user runs it, through the desk) fits the head on the pool and
reports its out-of-fold accepted precision. Then the head answers the known test queries, the held-out intents'
queries and, as inputs from elsewhere, 500 restaurant bookings and the CAsT follow-up questions, with the
novelty rule and without it (the same head, the rule switched off): how many are accepted, and how many of the
accepted known queries are right. Section 9 of scripts/benchmark.py runs this.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SLM_DESK_HOME", tempfile.mkdtemp(prefix="slm-desk-open-set-"))
sys.path.insert(0, str(ROOT))

from slm_desk import locations  # noqa: E402
from slm_desk.contract.results import RunResult  # noqa: E402
from slm_desk.contract.tasks import load_task  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def intent_task(name: str, intents: list[str]) -> str:
    """A user's task file whose one label field is banking77's intent, every intent low risk."""
    schema = {
        "type": "object",
        "properties": {"intent": {"type": "string", "enum": intents}},
        "required": ["intent"],
        "additionalProperties": False,
    }
    labels = "\n".join(f'{json.dumps(intent)} = "low"' for intent in intents)
    text = (
        f'description = "banking77 intent ({len(intents)} intents; open-set benchmark)"\n'
        'instructions = "Name the intent of the banking customer\'s message."\n'
        "max_tokens = 24\n"
        f"schema = '''{json.dumps(schema)}'''\n\n[labels.intent]\n{labels}\n"
    )
    (locations.user_tasks_dir() / f"{name}.toml").write_text(text, encoding="utf-8")
    return name


def banking() -> list[tuple[str, str]]:
    seen: set[str] = set()
    rows = []
    with (DATA / "banking77" / "train.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = row["text"].strip()
            if text and text not in seen:
                seen.add(text)
                rows.append((text, row["category"]))
    return rows


def elsewhere(n: int = 500) -> list[str]:
    bookings = json.loads((DATA / "restaurant8k" / "train.json").read_text(encoding="utf-8"))
    texts = [b["userInput"]["text"].strip() for b in bookings if b["userInput"]["text"].strip()]
    questions = []
    for year in (2019, 2020):
        for line in (DATA / "cast" / f"rewrites-{year}.jsonl").read_text(encoding="utf-8").splitlines():
            questions.append(json.loads(line)["utterance"])
    return random.Random(0).sample(texts, n) + questions


def answers(desk: Any, task: Any, texts: list[str], rule: bool) -> list[RunResult]:
    first = desk.head(task)
    assert first is not None
    pipeline = first[0]
    head = pipeline.backend.head
    kept = head.familiarity
    head.familiarity = kept if rule else None
    try:
        out: list[RunResult] = []
        for start in range(0, len(texts), 512):
            out += [r for r in pipeline.answer_batch(texts[start : start + 512]) if isinstance(r, RunResult)]
        return out
    finally:
        head.familiarity = kept


def one(held_out: int, seed: int, data: list[tuple[str, str]], far: list[str]) -> dict[str, Any]:
    from slm_desk.desk import Desk

    intents = sorted({c for _, c in data})
    rng = random.Random(seed)
    unknown = set(rng.sample(intents, held_out))
    known = [(t, c) for t, c in data if c not in unknown]
    rng.shuffle(known)
    test_known, pool = known[: len(known) // 5], known[len(known) // 5 :]
    name = intent_task(f"banking77-open-{held_out}-{seed}", sorted(intents))
    desk = Desk()
    task = load_task(name)
    desk.store.add_to_pool(task.name, task.version, [(t, {"intent": c}, "file") for t, c in pool])
    started = time.perf_counter()
    trained = desk.train(task).trained
    took = time.perf_counter() - started
    report = trained.report
    gold = dict(test_known)
    row: dict[str, Any] = {
        "held_out": held_out,
        "known": len(intents) - held_out,
        "pool": len(pool),
        "train_seconds": took,
        "label_features": report.label_features,
        "oof_accept_rate": report.heldout_accept_rate,
        "oof_accepted_precision": report.heldout_accepted_precision,
        "threshold": report.novelty_threshold,
    }
    unseen = [t for t, c in data if c in unknown]
    for rule in (False, True):
        tag = "rule" if rule else "no_rule"
        k = answers(desk, task, [t for t, _ in test_known], rule)
        accepted = [r for r in k if r.decision == "accept"]
        row[f"{tag}_known_accept"] = len(accepted) / len(k)
        row[f"{tag}_known_precision"] = sum(r.output == {"intent": gold[r.input]} for r in accepted) / max(
            1, len(accepted)
        )
        row[f"{tag}_unseen_accepted"] = sum(r.decision == "accept" for r in answers(desk, task, unseen, rule)) / len(
            unseen
        )
        row[f"{tag}_elsewhere_accepted"] = sum(r.decision == "accept" for r in answers(desk, task, far, rule)) / len(
            far
        )
    desk.close()
    return row


def report(held_outs: list[int], seed: int) -> list[dict[str, Any]]:
    data, far = banking(), elsewhere()
    print(
        "\n9. what the head never saw: banking77's 77 intents as one task, intents held out of the pool "
        f"(seed {seed}); accepted = decision accept"
    )
    print(
        f"{'known':>6} {'pool':>6} {'features':>17} {'train: accepted':>16} {'test known: accepted':>26}"
        f" {'held-out intents':>17} {'elsewhere':>10}"
    )
    rows = []
    for n in held_outs:
        row = one(n, seed, data, far)
        rows.append(row)
        for tag, label in (("no_rule", "without the rule"), ("rule", "with the rule")):
            print(
                f"{row['known']:>6} {row['pool']:>6} {row['label_features']:>17}"
                f" {row['oof_accept_rate']:>7.1%} at {row['oof_accepted_precision']:>5.1%}"
                f" {row[f'{tag}_known_accept']:>14.1%} at {row[f'{tag}_known_precision']:>5.1%}"
                f" {row[f'{tag}_unseen_accepted']:>17.1%} {row[f'{tag}_elsewhere_accepted']:>10.1%}   {label}"
            )
        print(f"       (train took {row['train_seconds']:.0f} s; novelty threshold {row['threshold']:.2f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", default="12,38,58", help="counts of intents held out of the pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = report([int(n) for n in args.held_out.split(",")], args.seed)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
