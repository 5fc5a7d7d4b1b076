"""The Teach screen (F5): a labelled file in, the head trained with the app live, the accuracy shown, an item
removed (the head is stale), the pool exported. Everything is real (the store, sklearn); no model is loaded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Input, Select, Static

from slm_desk import apart
from slm_desk.contract.tasks import load_task
from slm_desk.desk import Desk
from slm_desk.tui.app import SlmDeskApp
from slm_desk.tui.modals import Confirm, Problems
from slm_desk.tui.teach_screen import TeachScreen
from tests.conftest import messages
from tests.test_tui import SIZE

POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"


def summary(app: SlmDeskApp) -> str:
    return str(app.screen.query_one("#teach-summary", Static).render())


async def answer_path(pilot, path: Path | str) -> None:  # type: ignore[no-untyped-def]
    await pilot.pause()
    field = pilot.app.screen.query_one("#path", Input)
    field.value = str(path)
    await pilot.press("enter")


async def wait_until(pilot, done) -> None:  # type: ignore[no-untyped-def]
    for _ in range(600):
        if done():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out")


async def test_import_a_file_train_and_see_the_accuracy(tmp_path: Path) -> None:
    bad = tmp_path / "labelled.jsonl"
    lines = POOL.read_text(encoding="utf-8").splitlines()[:200]  # enough to train on, and three times quicker
    bad.write_text("\n".join([*lines, "{not json", json.dumps({"input": "x", "output": {"route": "nope"}})]) + "\n")
    app = SlmDeskApp(desk=Desk())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, TeachScreen)
        assert app.screen.query_one("#task", Select).value == "route-ticket"
        assert "pool: 0 items" in summary(app) and "not trained" in summary(app)

        await pilot.press("i")
        await answer_path(pilot, bad)
        await wait_until(pilot, lambda: isinstance(app.screen, Problems))
        shown = messages(app)
        assert any(f"{len(lines)} added" in m and "2 skipped" in m for m in shown), shown
        listed = str(app.screen.query_one("#problems Static", Static).render())
        assert f"{bad}:{len(lines) + 1}" in listed and f"{bad}:{len(lines) + 2}" in listed  # every bad line, named
        await pilot.press("escape")
        await wait_until(pilot, lambda: f"pool: {len(lines)} items" in summary(app))
        assert f"{len(lines)} from file" in summary(app)
        values = app.screen.query_one("#values", DataTable)
        assert values.row_count >= 5 and str(values.get_row_at(0)[0]) in load_task("route-ticket").labels["route"]

        await pilot.press("t", "t")  # twice: the second says it is already training (its child is still starting)
        assert any("already training" in m for m in messages(app))
        await wait_until(pilot, lambda: "held-out accuracy" in summary(app))
        assert any(f"head trained on {len(lines)} items: held-out accuracy" in m for m in messages(app))
        assert "STALE" not in summary(app) and not app.screen.training

        table = app.screen.query_one("#pool", DataTable)
        table.focus()
        first = int(str(table.get_row_at(0)[0]))
        await pilot.press("delete")  # it asks first, naming the item
        await pilot.pause()
        assert isinstance(app.screen, Confirm) and f"Remove pool item {first}" in str(
            app.screen.query_one(".question", Static).render()
        )
        await pilot.press("y")
        await pilot.pause()
        assert f"pool: {len(lines) - 1} items" in summary(app)
        assert "STALE: the pool has changed since training" in summary(app)
        assert all(item["id"] != first for item in app.desk.store.pool("route-ticket", 1))

        await pilot.press("t")
        await wait_until(pilot, lambda: not app.screen.training and "STALE" not in summary(app))
        assert any("(was " in m for m in messages(app))  # the new accuracy beside the old

        out = tmp_path / "exported.jsonl"
        await pilot.press("x")
        await answer_path(pilot, out)
        await pilot.pause()
        exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(exported) == len(lines) - 1 and set(exported[0]) == {"input", "output"}


def _pooled() -> tuple[Desk, SlmDeskApp]:
    """A desk whose route-ticket pool holds POOL, and the app over it."""
    desk = Desk()
    desk.add_examples(load_task("route-ticket"), POOL)
    return desk, SlmDeskApp(desk=desk)


async def test_esc_cancels_training_and_leaves_no_head() -> None:
    desk, app = _pooled()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("t", "escape")  # the child hears "stop" before its first step ends
        await wait_until(pilot, lambda: not app.screen.training)
        await wait_until(pilot, lambda: any("training cancelled: the head is unchanged" in m for m in messages(app)))
        assert desk.store.head_trained_at("route-ticket", 1) is None
        assert "not trained" in summary(app)


async def test_esc_in_the_moment_training_starts_puts_the_screen_back() -> None:
    """`t` and Esc in one burst (one terminal read): the worker is cancelled before its first step and never reports
    a state; the screen must not stay "training" with nothing running."""
    desk, app = _pooled()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        app.screen.action_train()  # both in one tick of the event loop, as a burst of keys arrives
        app.screen.action_cancel()
        await wait_until(pilot, lambda: not app.screen.training)
        assert any("cancelled before it began" in m for m in messages(app)), messages(app)
        assert desk.store.head_trained_at("route-ticket", 1) is None


async def test_esc_during_the_comparison_keeps_the_head_and_says_so(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Esc while the small model is being compared stops the comparison, and the head, already fitted, is saved to
    answer alone (`apart.train` returns): the screen says that, never that the head is unchanged."""

    def compared_until_stopped(*args: Any, cancelled: Any, **kwargs: Any) -> apart.Outcome:
        while not cancelled():
            time.sleep(0.01)
        return apart.Outcome(n_train=40, heldout_accuracy=0.9, model="", measured=0, interrupted=True, note="")

    monkeypatch.setattr(apart, "train", compared_until_stopped)  # the training process is this screen's neighbour
    _, app = _pooled()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("t", "escape", "escape")
        await wait_until(pilot, lambda: any("the comparison was stopped" in m for m in messages(app)))
        await pilot.pause(0.3)
        assert not any("unchanged" in m for m in messages(app)), messages(app)


async def test_a_task_with_free_text_fields_says_it_has_no_head() -> None:
    app = SlmDeskApp(desk=Desk())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        app.screen.query_one("#task", Select).value = "draft-reply"
        await pilot.pause()
        assert "no head: its fields are free text" in summary(app)
        await pilot.press("t")
        assert any("a head cannot learn them" in m for m in messages(app))


async def test_a_teacher_labels_inputs_into_review_never_the_pool(tmp_path: Path) -> None:
    from tests.servers import picky_server

    inputs = tmp_path / "unlabelled.txt"
    inputs.write_text("my card is stuck in the ATM\n\nmy new card has not arrived\n")
    desk = Desk()
    with picky_server(b"", answer='{"route": "card_issue"}') as (url, _):
        app = SlmDeskApp(desk=desk)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f5")
            await pilot.pause()
            await pilot.press("d")
            await answer_path(pilot, inputs)
            await answer_path(pilot, url)
            await wait_until(pilot, lambda: any("wait in Review" in m for m in messages(app)))
            assert any("2 teacher labels and 0 flagged" in m for m in messages(app)), messages(app)
            assert not app.screen.training
    queued = desk.review_queue()
    assert sorted(item["input"] for item in queued) == ["my card is stuck in the ATM", "my new card has not arrived"]
    assert all("distilled from" in item["reason"] for item in queued)
    assert desk.store.pool("route-ticket", 1) == []  # teacher labels wait for a person


async def test_the_training_bar_runs_once_per_phase_and_never_goes_back() -> None:
    """It went 0 % for 8 s, 100 % for 12 s, back to 2 %, and ended at 17 %: two phases shared one bar and total."""
    from textual.widgets import ProgressBar

    from slm_desk.tui.teach_screen import ASKING, FITTING

    app = SlmDeskApp(desk=Desk())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        screen = app.screen
        screen._busy(None)
        bar = screen.query_one("#train-progress", ProgressBar)
        seen = []
        for phase, done, total in [
            (FITTING, 0, 5),
            (FITTING, 3, 5),
            (FITTING, 2, 5),
            (FITTING, 5, 5),
            (ASKING, 0, 100),
            (ASKING, 2, 100),
            (ASKING, 17, 100),
        ]:
            screen._progress(phase, done, total)
            seen.append((screen.phase, bar.progress, bar.total))
        assert [p for ph, p, _ in seen if ph == FITTING] == [0, 3, 3, 5]  # never back within a phase
        assert [(p, t) for ph, p, t in seen if ph == ASKING] == [(0, 100), (2, 100), (17, 100)]  # its own total
        assert str(screen.query_one("#train-phase").render()) == f"{ASKING}: 17 of 100"
