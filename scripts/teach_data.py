"""Example pools from the public data in ../shared/data, held apart from the built-in eval sets.

    python scripts/teach_data.py OUT_DIR [DATA_DIR]

Writes OUT_DIR/route-ticket.pool.jsonl (every banking77 query mapped to its route),
OUT_DIR/extract-booking.pool.jsonl (every restaurant8k utterance with its slot spans), both PolyAI's (CC BY 4.0),
each without the inputs of the built-in eval sets and of the tasks' own few-shot examples, and
OUT_DIR/rewrite-followup.pool.jsonl (TREC CAsT, MIT: every turn of 2020 and of the 2019 conversations that are not
eval topics), OUT_DIR/rewrite-query.pool.jsonl (TREC topics, NIST), title-bug-report.pool.jsonl (gitbugs, CC BY 4.0),
draft-support-reply.pool.jsonl (Bitext, CDLA-Sharing-1.0: a pool built from it that you share carries that licence)
and guard.pool.jsonl (deepset's prompts, Apache-2.0, and BIPIA's emails, MIT): the pool teaches, the eval set judges.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_evalsets import (  # noqa: E402
    CAST_EVAL_TOPICS,
    HANDWRITTEN,
    ROOT,
    ROUTE_OF,
    booking_items,
    bug_items,
    cast_turns,
    email_items,
    example_inputs,
    followup_item,
    prompt_items,
    support_items,
    topic_items,
)


def held_out(task: str) -> set[str]:
    path = ROOT / "slm_desk" / "evalsets" / f"{task}.jsonl"
    return {json.loads(line)["input"] for line in path.read_text(encoding="utf-8").splitlines()} | example_inputs(task)


def route_pool(data: Path) -> list[dict]:
    skip = held_out("route-ticket")
    seen: set[str] = set()
    items = []
    with (data / "banking77" / "train.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            text = row["text"].strip()
            if text in skip or row["text"] in skip or text in seen:
                continue
            seen.add(text)
            items.append({"input": text, "output": {"route": ROUTE_OF[row["category"]]}})
    return items


def booking_pool(data: Path) -> list[dict]:
    return booking_items(data, held_out("extract-booking"))


def within_contract(task: str, items: list[dict]) -> tuple[list[dict], list[dict]]:
    """The items the task's contract accepts as pool lines (`slm-desk examples add` would skip the rest, naming
    them: a title with a number its description lacks, one past 200 characters), and the others."""
    sys.path.insert(0, str(ROOT))
    from slm_desk.contract.tasks import load_task
    from slm_desk.data.pool import check_item
    from slm_desk.errors import UsageError

    contract = load_task(task)
    kept, broken = [], []
    for item in items:
        try:
            check_item(contract, item)
        except UsageError:
            broken.append(item)
        else:
            kept.append(item)
    return kept, broken


def _handwritten(task: str) -> list[dict]:
    lines = (HANDWRITTEN / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
    return [{"input": i["input"], "output": i["output"]} for i in map(json.loads, lines)]


def _rest(items: list[dict], task: str) -> list[dict]:
    skip = held_out(task)
    return [{"input": i["input"], "output": i["output"]} for i in items if i["input"] not in skip]


def query_pool(data: Path) -> list[dict]:
    """TREC topics not in the eval set, and the chatty requests written for slm-desk (its eval set before)."""
    return _rest(topic_items(data), "rewrite-query") + _handwritten("rewrite-query")


def bug_pool(data: Path) -> list[dict]:
    return _rest(bug_items(data), "title-bug-report")


def support_pool(data: Path) -> list[dict]:
    return _rest(support_items(data), "draft-support-reply")


def guard_pool(data: Path) -> list[dict]:
    """deepset's prompts (label only for an injection) and BIPIA's emails not in the eval set, and the texts written
    for slm-desk (its eval set before): the only personal data (pii) any pool holds."""
    return _rest(prompt_items(data) + email_items(data), "guard") + _handwritten("guard")


def followup_pool(data: Path) -> list[dict]:
    turns = [t for t in cast_turns(data, 2019) if t["topic"] not in CAST_EVAL_TOPICS] + cast_turns(data, 2020)
    skip = held_out("rewrite-followup")
    return [item for item in map(followup_item, turns) if item["input"] not in skip]


if __name__ == "__main__":
    out = Path(sys.argv[1])
    data_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT.parent / "shared" / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (
        ("route-ticket", route_pool(data_dir)),
        ("extract-booking", booking_pool(data_dir)),
        ("rewrite-followup", followup_pool(data_dir)),
        ("rewrite-query", query_pool(data_dir)),
        ("title-bug-report", bug_pool(data_dir)),
        ("draft-support-reply", support_pool(data_dir)),
        ("guard", guard_pool(data_dir)),
    ):
        kept, broken = within_contract(name, items)
        path = out / f"{name}.pool.jsonl"
        path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in kept), encoding="utf-8")
        print(
            f"{path}: {len(kept)} items"
            + (f" ({len(broken)} that break the task's contract left out)" if broken else "")
        )
