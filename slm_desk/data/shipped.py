"""Calibration profiles that ship with the built-in tasks, measured for the bundled model on each task's built-in
eval set by `scripts/build_profiles.py`, so a first run already applies thresholds. A profile a person measures
(`slm-desk calibrate`) is stored and always wins; a user's task file that overrides a built-in one never gets the
built-in's profile, since its contract may differ."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from slm_desk.contract.calibration import Profile

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task


def profile(task: Task, model: str) -> Profile | None:
    """The shipped profile of a built-in task on `model`, for its current version, or None."""
    if task.source != f"built-in:{task.name}":
        return None
    shipped = _read(task.name)
    return shipped if shipped is not None and (shipped.task_version, shipped.model) == (task.version, model) else None


@cache
def _read(name: str) -> Profile | None:
    """A shipped profile file, parsed once per process (every pipeline a run builds asks for it)."""
    entry = resources.files("slm_desk") / "profiles" / f"{name}.json"
    return Profile.model_validate_json(entry.read_text(encoding="utf-8")) if entry.is_file() else None
