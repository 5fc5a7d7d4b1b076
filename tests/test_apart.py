"""Training apart from the app (slm_desk/apart.py): a real child process trains a real head on a real store, tells
each step as it goes, stops when asked, and brings a refusal back as the error it was, hint and all. In the app, a
training happens there and not on the app's own interpreter lock: the event loop's worst lag is measured."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from slm_desk import apart
from slm_desk.contract.tasks import load_task
from slm_desk.desk import Desk
from slm_desk.errors import Cancelled, UsageError
from slm_desk.tui.app import SlmDeskApp
from tests.conftest import messages
from tests.test_teach_screen import summary, wait_until
from tests.test_tui import SIZE

POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"


def _desk(tmp_path: Path, lines: int = 200) -> Desk:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(POOL.read_text(encoding="utf-8").splitlines()[:lines]) + "\n", encoding="utf-8")
    desk = Desk()
    desk.add_examples(load_task("route-ticket"), pool)
    return desk


def test_a_child_trains_the_head_and_tells_each_step(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    said: list[str] = []
    steps: list[tuple[int, int]] = []
    outcome = apart.train(
        desk.config, load_task("route-ticket"), said=said.append, steps=lambda d, t: steps.append((d, t))
    )
    report = desk.head_report(load_task("route-ticket"))  # the child saved it where this desk reads
    assert report is not None and outcome.n_train == report.n_train == 200
    assert outcome.heldout_accuracy == pytest.approx(report.heldout_accuracy)
    assert any("200 pool items" in line for line in said)
    assert steps and steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)
    desk.close()


def test_a_cancel_stops_the_child_and_leaves_no_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    desk = _desk(tmp_path)
    children: list[int] = []
    popen = subprocess.Popen

    def spawned(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        child = popen(*args, **kwargs)
        children.append(child.pid)
        return child

    monkeypatch.setattr(subprocess, "Popen", spawned)
    with pytest.raises(Cancelled):
        apart.train(desk.config, load_task("route-ticket"), cancelled=lambda: True)
    assert desk.store.head_trained_at("route-ticket", 1) is None
    assert len(children) == 1 and not Path(f"/proc/{children[0]}").exists()  # stopped, or killed: never left over
    desk.close()


def test_a_refusal_in_the_child_comes_back_as_the_error_with_its_hint(tmp_path: Path) -> None:
    desk = _desk(tmp_path, lines=10)  # fewer than a head needs
    with pytest.raises(UsageError) as refused:
        apart.train(desk.config, load_task("route-ticket"))
    assert "the head needs at least" in refused.value.message and refused.value.hint
    desk.close()


async def test_the_app_trains_apart_and_its_event_loop_stays_live(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Fitting in one of the app's threads stalled its loop up to 0.75 s on the banking77 pool (2 cores). The app's
    own `Desk.train` is broken here on purpose: the head is still trained, so it was trained elsewhere."""
    desk = _desk(tmp_path, lines=600)

    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("the app trained on its own interpreter")

    monkeypatch.setattr(Desk, "train", not_here)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        ticks: list[float] = []
        app.set_interval(0.02, lambda: ticks.append(time.monotonic()))
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.screen.training)
        assert any("head trained on 600 items" in m for m in messages(app)), messages(app)
        assert "held-out accuracy" in summary(app)
    worst = max(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    print(f"event loop's worst lag while a head trained: {worst * 1000:.0f} ms")
    assert worst < 3.0, worst  # a bound for a busy machine: the broken Desk.train above is what proves "apart"
    desk.close()
