"""The calibration profiles the built-in tasks ship for the bundled model: each loads for its task, a profile
measured here wins, and a user's task of the same name never borrows one. No model loads."""

from __future__ import annotations

from importlib import resources

import pytest

from slm_desk import locations
from slm_desk.contract.decision import decide
from slm_desk.contract.tasks import load_task, task_names, task_text
from slm_desk.data import shipped
from slm_desk.data.catalog import BUNDLED_ID
from slm_desk.data.evalset import builtin
from slm_desk.desk import Desk

SHIPPED = sorted(e.name.removesuffix(".json") for e in (resources.files("slm_desk") / "profiles").iterdir())


def test_every_task_with_an_eval_set_ships_a_profile() -> None:
    assert sorted(name for name in task_names() if builtin(name) is not None) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_profile_loads_for_its_task_on_the_bundled_model(name: str) -> None:
    task = load_task(name)
    profile = Desk().profile(task, BUNDLED_ID)
    assert profile is not None and profile.task == name and profile.source.startswith("shipped: measured on")
    groups = {f"{field}={label}" for field, labels in task.labels.items() for label in labels} or {"*"}
    assert groups <= set(profile.thresholds) and profile.task_version == task.version
    assert Desk().profile(task, "another-model") is None  # measured on the bundled model only


def test_a_profile_measured_here_wins_and_a_user_task_never_borrows_one() -> None:
    task = load_task("route-ticket")
    desk = Desk()
    mine = shipped.profile(task, BUNDLED_ID).model_copy(update={"source": "", "accuracy": 0.5})  # type: ignore[union-attr]
    desk.store.save_calibration(mine)
    assert desk.profile(task, BUNDLED_ID) == mine
    copy = locations.user_tasks_dir() / "guard.toml"  # the user's own file, even one word for word the built-in
    copy.write_text(task_text("guard")[0], encoding="utf-8")
    assert load_task("guard").source == str(copy) and shipped.profile(load_task("guard"), BUNDLED_ID) is None


def test_a_decision_on_a_shipped_profile_says_where_the_profile_came_from() -> None:
    route, followup = load_task("route-ticket"), load_task("rewrite-followup")
    profile = shipped.profile(route, BUNDLED_ID)
    assert profile is not None
    verdict = decide(route, {"route": "card_issue"}, [], 0.99, profile)
    assert verdict.decision == "review" and verdict.reason.endswith("(the profile shipped for this model)")
    measured = profile.model_copy(update={"source": ""})
    assert "shipped" not in decide(route, {"route": "card_issue"}, [], 0.99, measured).reason
    verdict = decide(
        followup, {"query": "Is throat cancer treatable?"}, [], 0.99, shipped.profile(followup, BUNDLED_ID)
    )
    assert verdict.decision == "accept" and verdict.reason.endswith("precision, the profile shipped for this model)")
