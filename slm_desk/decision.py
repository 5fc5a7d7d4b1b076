"""Accept, escalate or send to review: the task's risk rules applied to one validated result."""

from __future__ import annotations

from typing import Any, Literal

from slm_desk.tasks import Task

Decision = Literal["accept", "escalate", "review"]


def decide(task: Task, output: dict[str, Any] | None, errors: list[str]) -> tuple[Decision, str]:
    """The decision and a reason a person can read."""
    if errors:
        return "review", "validation failed after retry: " + "; ".join(errors)
    assert output is not None
    high = [f"{f}={output[f]}" for f in task.labels if task.risk_of(f, output.get(f)) == "high"]
    if high:
        return "review", f"high-risk label {', '.join(high)} always needs a second check"
    return "accept", "valid; task not calibrated, so no confidence threshold applied"
