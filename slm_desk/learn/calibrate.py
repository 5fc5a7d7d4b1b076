"""The calibration run: answer labelled items with a task's small-model tier, uncalibrated, and build the profile
(`calibration`) from what it got right. `Desk.calibrate` runs it for the CLI and the app and stores the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slm_desk.contract.calibration import Profile, Sample, answer_right, build_profile, is_correct

if TYPE_CHECKING:
    from slm_desk.judge.pipeline import Pipeline


def run(
    pipeline: Pipeline,
    items: list[dict[str, Any]],
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Profile:
    """Run the task on labelled items (uncalibrated) and build the profile from what the model got right."""
    task = pipeline.task
    samples: list[Sample] = []
    right, judged = dict.fromkeys(task.fields, 0), dict.fromkeys(task.fields, 0)
    for done, item in enumerate(items, 1):
        result = pipeline.answer(item["input"], cancelled=cancelled)
        for field in (f for f in task.fields if f in item["output"]):  # a gold line may leave a field out
            judged[field] += 1
            right[field] += is_correct(result.output, item["output"], field, task.match_bar(field))
        if result.valid and result.output is not None and result.raw_confidence is not None:
            correct = answer_right(task, result.output, item["output"])
            samples.append(Sample(result.raw_confidence, correct, [g for g, _ in task.groups(result.output)]))
        if progress:
            progress(done, len(items))
    field_accuracy = {f: right[f] / judged[f] for f in task.fields if judged[f]}
    return build_profile(task, pipeline.backend.model, samples, len(items), field_accuracy)
