"""Export SVG screenshots of the main screens into assets/ (shown in the README).

    .venv/bin/python scripts/screenshots.py

Uses a throwaway SLM_DESK_HOME, real inference on the bundled model, a calibration profile built from the
route-ticket eval set (the first 100 examples), a label head trained on tests/data's route-ticket pool, and a
review queue seeded by real runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["SLM_DESK_HOME"] = tempfile.mkdtemp(prefix="slm-desk-shots-")
sys.path.insert(0, str(ROOT))

from textual.widgets import TextArea  # noqa: E402

from slm_desk.contract.tasks import load_task  # noqa: E402
from slm_desk.data import pool  # noqa: E402
from slm_desk.data.evalset import builtin, read_jsonl  # noqa: E402
from slm_desk.desk import Desk  # noqa: E402
from slm_desk.tui.app import SlmDeskApp  # noqa: E402

SIZE = (110, 34)


def prepare(desk: Desk) -> None:
    task = load_task("route-ticket")
    pool.add_file(desk.store, task, ROOT / "tests" / "data" / "route-ticket.pool.jsonl")  # teach it (600 items)
    desk.train(task)
    items = read_jsonl(builtin("route-ticket"))[:100]  # type: ignore[arg-type]
    desk.calibrate(task, items)
    cascade = desk.cascade("extract-booking")
    for text in ("A table for 4 at 7pm on Friday, name is Sam Jones", "Can I bring my dog?"):
        desk.store.record(cascade.run(text))


async def main() -> None:
    desk = Desk()
    prepare(desk)
    app = SlmDeskApp(initial_task="extract-ticket", desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#input", TextArea).text = "Customer reports duplicate charge on invoice INV-8821."
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shots = [("run", None), ("history", "f2"), ("review", "f3"), ("models", "f4"), ("teach", "f5")]
        shots.append(("calibration", "f6"))
        for name, key in shots:
            if key:
                await pilot.press(key)
                await pilot.pause()
            app.save_screenshot(f"{name}.svg", path=str(ROOT / "assets"))
            print(f"assets/{name}.svg")


if __name__ == "__main__":
    asyncio.run(main())
