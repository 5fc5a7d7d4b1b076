"""Nothing a person does in the teaching loop is lost, driven through the app (Pilot): the app's train keeps what was
measured, labels given while a head retrains count, del asks, a label key that agrees accepts, and the app's own
keys are what it names. The store and the heads are real; the test with a model is marked."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Footer, Select

from slm_desk import apart
from slm_desk.contract.tasks import load_task
from slm_desk.data import review
from slm_desk.desk import Desk
from slm_desk.judge import tiers
from slm_desk.learn import head
from slm_desk.tui.app import SlmDeskApp
from slm_desk.tui.modals import Confirm
from tests.conftest import first_items, messages
from tests.test_review_order import LABELS, queue
from tests.test_teach_screen import summary, wait_until
from tests.test_tui import SIZE

POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"
ROUTE = load_task("route-ticket")


def _taught(tmp_path: Path, n: int = 200) -> Desk:
    desk = Desk()
    desk.add_examples(ROUTE, first_items(POOL, n, tmp_path / "pool.jsonl"))
    desk.train(ROUTE)
    return desk


def _measured(desk: Desk) -> tiers.TierPolicy:
    """Store the head again with a policy as `train --compare N` would have measured it on the small model."""
    loaded = head.load(desk.store, ROUTE)
    assert loaded is not None
    policy = loaded.policy or tiers.no_comparison([], 0.1)
    policy = policy.model_copy(update={"model": "smollm2-135m", "measured": 40, "measured_at": "2026-12-01"})
    head.save(desk.store, loaded.backend.head, loaded.profile, loaded.report, policy)
    return policy


# -- 1. the app's train never drops a measured policy ------------------------------------------------------------


async def test_the_apps_train_keeps_the_policy_train_measured(tmp_path: Path) -> None:
    desk = _taught(tmp_path)
    _measured(desk)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.screen.training and any("head trained" in m for m in messages(app)))
        said = next(m for m in messages(app) if "head trained" in m)
        assert "smollm2-135m measured" in said or "policy measured before is kept" in said or "was not" in said
    policy = head.load_policy(desk.store, ROUTE)
    assert policy is not None and policy.model == "smollm2-135m" and policy.measured == 40  # kept, never dropped


@pytest.mark.model
async def test_the_apps_train_measures_the_small_model_with_progress(tmp_path: Path) -> None:
    desk = _taught(tmp_path, 120)  # the training's child measures the model within its own budget (a minute)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("t")
        await wait_until(pilot, lambda: "asking smollm2-135m" in str(app.screen.sub_title) or not app.screen.training)
        await wait_until(pilot, lambda: not app.screen.training)
        await app.workers.wait_for_complete()
    policy = head.load_policy(desk.store, ROUTE)
    assert policy is not None and policy.model == "smollm2-135m" and policy.measured >= 1


# -- 2. labels given while the head retrains make it stale and count toward the next retrain -----------------------


async def test_labels_given_during_a_retrain_are_stale_and_counted(
    slm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text("[teach]\nretrain_after = 2\n")
    desk = _taught(tmp_path)
    for n in range(4):
        queue(desk, f"a new question {n} about my card", "other", 0.5)
    reading, labelled, train = threading.Event(), threading.Event(), apart.train

    def slow(config: Any, task: Any, **options: Any) -> Any:  # the child has read its pool: the label below comes
        def hold(line: str) -> None:  # after that, while the app is still retraining
            if line.strip().startswith("fold 1/"):
                reading.set()
                labelled.wait(20)

        return train(config, task, **{**options, "said": hold})

    monkeypatch.setattr(apart, "train", slow)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#queue", DataTable).focus()
        await pilot.press(str(LABELS.index("card_issue") + 1))
        await pilot.pause(0.6)
        await pilot.press(str(LABELS.index("fees_and_charges") + 1))  # the second label: the retrain starts
        await wait_until(pilot, reading.is_set)
        await pilot.pause(0.6)
        await pilot.press(str(LABELS.index("account_access") + 1))  # given while the head trains
        await pilot.pause()
        labelled.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
        assert "STALE" in summary(app), summary(app)  # the pool has the label the head was not fitted on
    assert desk.teaching(ROUTE).pool == 203
    report = desk.head_report(ROUTE)
    assert report is not None and report.n_train == 202
    assert desk.store.labels_since("route-ticket", ROUTE.version, report.pool_read_at) == 1  # it counts


# -- 3. del asks, names the item, and acts only where the person is --------------------------------------------


async def test_del_asks_first_and_only_in_the_pool_list(tmp_path: Path) -> None:
    desk = Desk()
    desk.add_examples(ROUTE, first_items(POOL, 40, tmp_path / "pool.jsonl"))
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        app.screen.query_one("#task", Select).focus()
        await pilot.press("delete", "delete")  # on the task selector: nothing is removed, the list takes the focus
        await pilot.pause()
        assert len(desk.store.pool("route-ticket", 1)) == 40 and isinstance(app.screen, Confirm)
        await pilot.press("escape")  # the second press asked; no is the answer
        await pilot.pause()
        assert len(desk.store.pool("route-ticket", 1)) == 40
        table = app.screen.query_one("#pool", DataTable)
        assert table.has_focus
        top = int(str(table.get_row_at(0)[0]))
        await pilot.press("delete", "y")
        await pilot.pause()
        assert [i["id"] for i in desk.store.pool("route-ticket", 1)].count(top) == 0
        assert len(desk.store.pool("route-ticket", 1)) == 39 and f"removed pool item {top}" in messages(app)[-1]


# -- 5. review: agreeing is accepting, the label is named, a double press labels once, stale items reload ------


async def test_a_label_key_that_agrees_accepts_and_names_the_label(tmp_path: Path) -> None:
    desk = Desk()
    for n in range(3):
        queue(desk, f"question {n} about my card", "card_issue", 0.3)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#queue", DataTable).focus()
        key = str(LABELS.index("card_issue") + 1)
        await pilot.press(key, key)  # twice at once: one verdict
        await pilot.pause()
        said = messages(app)
        assert any("accepted as route=card_issue" in m for m in said), said
        assert any("pressed twice: the second press is ignored" in m for m in said)
        assert len(review.pending(desk.store)) == 2
        statuses = [r[0] for r in desk.store.db.execute("SELECT status FROM review ORDER BY id")]
        assert statuses == ["accepted", "pending", "pending"]  # agreeing is accepting, never a "correction"

        time.sleep(0.6)
        other = str(LABELS.index("other") + 1)
        await pilot.press(other)
        await pilot.pause()
        assert any("corrected as route=other" in m for m in messages(app))

        last = review.pending(desk.store)[0]
        review.give(desk.store, last["id"], "accept")  # the CLI resolves it while the app shows it
        await pilot.press("a")
        await pilot.pause()
        assert any("was already accepted" in m and "the queue is reloaded" in m for m in messages(app))
        assert app.screen.query_one("#queue", DataTable).row_count == 0


# -- messages that tell the truth, in the app ----------------------------------------------------------------------


async def test_train_on_a_pool_too_small_names_this_screens_key() -> None:
    app = SlmDeskApp(desk=Desk())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        said = messages(app)[-1]
        assert "pool has 0 items: a head needs at least 30" in said and "i imports a labelled JSONL file" in said
        assert "slm-desk examples add" not in said


async def test_the_palette_finds_actions_not_only_screens() -> None:
    app = SlmDeskApp(desk=Desk())
    async with app.run_test(size=SIZE):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for wanted in ("Teach: Train (t)", "Teach: Import (i)", "Teach: Export (x)", "Models: Pull (p)"):
            assert wanted in titles, wanted
        assert any(t.startswith("Calib: Calibrate") for t in titles)


async def test_narrow_screens_keep_the_answers_the_counts_and_a_clean_footer(tmp_path: Path) -> None:
    desk = Desk()
    desk.add_examples(ROUTE, first_items(POOL, 40, tmp_path / "pool.jsonl"))
    for size in ((80, 24), (60, 20)):
        app = SlmDeskApp(desk=desk)
        async with app.run_test(size=size) as pilot:
            await pilot.press("f5")
            await pilot.pause()
            pool = app.screen.query_one("#pool", DataTable)
            labels = [str(c.label) for c in pool.columns.values()]
            assert "output" in labels, (size, labels)
            counts = app.screen.query_one("#values", DataTable)
            for row in range(counts.row_count):
                assert str(counts.get_row_at(row)[-1]).isdigit()  # every count whole
            region = pool.region
            assert region.right <= size[0]
            await pilot.press("f3")
            await pilot.pause()
            footer = app.screen.query_one(Footer)
            assert footer.show_command_palette == (size[0] >= 72)


async def test_the_open_teach_screen_shows_the_head_a_background_retrain_just_saved(
    slm_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the automatic retrain the open Teach screen kept the old head and a STALE mark for minutes."""
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text("[teach]\nretrain_after = 1\n")
    desk = _taught(tmp_path)
    queue(desk, "a new question about my card", "other", 0.5)
    released, train = threading.Event(), apart.train

    def held(config: Any, task: Any, **options: Any) -> Any:
        released.wait(20)
        return train(config, task, **options)

    monkeypatch.setattr(apart, "train", held)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await app.workers.wait_for_complete()
        app.screen.query_one("#queue", DataTable).focus()
        await pilot.press(str(LABELS.index("card_issue") + 1))  # the one label: the retrain starts, and waits
        await pilot.press("f5")
        await pilot.pause()
        assert "on 200 items" in summary(app) and "STALE" in summary(app), summary(app)
        released.set()
        await wait_until(pilot, lambda: "on 201 items" in summary(app))  # no key pressed: the screen reloaded
        assert "STALE" not in summary(app)
