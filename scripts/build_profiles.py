"""Measure the calibration profile each built-in task ships for the bundled model, on its built-in eval set.

    .venv/bin/python scripts/build_profiles.py [TASK ...]

Writes slm_desk/profiles/TASK.json: the task, static (its own few-shot examples, no pool, no head), answered
by the bundled model on every item of its eval set, and the profile `slm-desk calibrate` would build from that
(reliability, isotonic map, per-label thresholds). `run` applies it until a person calibrates the task here.
Rebuild after changing a built-in task (its version is part of the profile) or the bundled model.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["SLM_DESK_HOME"] = tempfile.mkdtemp(prefix="slm-desk-profiles-")  # no pool, no head, no profile
sys.path.insert(0, str(ROOT))

from slm_desk.contract.tasks import load_task, task_names  # noqa: E402
from slm_desk.data.evalset import builtin, read_jsonl  # noqa: E402
from slm_desk.desk import Desk  # noqa: E402

# the bundled model answers extract-booking at ~3 s an item and 1 % of its static answers are valid (README):
# the first 100 items say that as well as all 300
# draft-support-reply (540) and title-bug-report (300) are large sets: 150 items say what the static prompt does
LIMIT = {"extract-booking": 100, "draft-support-reply": 150, "title-bug-report": 150}


def build(name: str) -> None:
    task = load_task(name)
    path = builtin(name)
    if path is None:
        print(f"{name}: no eval set, no profile", file=sys.stderr)
        return
    items = read_jsonl(path)[: LIMIT.get(name)]

    def progress(done: int, total: int) -> None:
        print(f"\r{name}: {done}/{total}", end="", file=sys.stderr, flush=True)

    profile = Desk().calibrate(task, items, progress=progress)
    source = f"shipped: measured on the built-in eval set ({len(items)} items) by scripts/build_profiles.py"
    out = ROOT / "slm_desk" / "profiles" / f"{name}.json"
    out.write_text(profile.model_copy(update={"source": source}).model_dump_json(indent=1) + "\n", encoding="utf-8")
    accepted = ", ".join(f"{g} {t.threshold:.3g}" for g, t in profile.thresholds.items() if t.threshold is not None)
    measured = f"{profile.n_valid} of {profile.n_examples} valid, {profile.accuracy:.1%} of those right"
    print(f"\r{name}: {measured}; thresholds: {accepted or 'none supported'}", file=sys.stderr)


if __name__ == "__main__":
    for task_name in sys.argv[1:] or list(task_names()):
        build(task_name)
