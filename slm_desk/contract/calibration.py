"""Calibration: is a confidence of 0.9 right 90 % of the time? Measured, corrected, and turned into thresholds.

From labelled runs of a task on one model we build a profile:
- a reliability table (10 bins: count, mean confidence, accuracy), ECE and Brier score, before and after;
- a monotone recalibration map (isotonic regression) applied to future confidences;
- per label, the lowest acceptance threshold whose Clopper-Pearson upper bound on the error rate (95 %) stays
  within the label's risk target, so the promised precision holds on unseen data, or a plain statement that the
  data cannot support the target.
ECE before and after recalibration is measured on a held-out split, never on the data the map was fitted on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from slm_desk.contract.words import token_f1

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task

BINS = 10
ALPHA = 0.05
HELDOUT = 0.3


@dataclass(frozen=True)
class Sample:
    confidence: float
    correct: bool
    groups: list[str]


class Bin(BaseModel):
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


class Threshold(BaseModel):
    risk: str
    target: float
    always_review: bool
    n: int
    threshold: float | None
    precision_at_threshold: float | None = None
    error_upper_bound: float | None = None
    accepted: int = 0
    note: str


class Profile(BaseModel):
    task: str
    task_version: int
    model: str
    n_examples: int
    n_valid: int
    accuracy: float
    field_accuracy: dict[str, float]
    reliability_raw: list[Bin]
    reliability_calibrated: list[Bin]
    ece_raw: float
    ece_calibrated: float
    brier_raw: float
    brier_calibrated: float
    heldout: dict[str, float | int]
    map_x: list[float]
    map_y: list[float]
    thresholds: dict[str, Threshold]
    source: str = ""  # where it was measured, when it did not come from `calibrate` here (a shipped profile)
    caveat: str = ""  # why it may not describe the answers it judges (a shipped one, while the task has a pool)

    def apply(self, confidence: float) -> float:
        return float(np.interp(confidence, self.map_x, self.map_y)) if self.map_x else confidence


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[Bin]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        table.append(
            Bin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=n,
                mean_confidence=float(conf[mask].mean()) if n else None,
                accuracy=float(correct[mask].mean()) if n else None,
            )
        )
    return table


def ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """Expected calibration error: bin-weighted |accuracy - confidence|."""
    if len(conf) == 0:
        return 0.0
    return sum(
        b.count / len(conf) * abs(b.accuracy - b.mean_confidence)  # type: ignore[operator]
        for b in reliability(conf, correct)
        if b.count
    )


def brier(conf: np.ndarray, correct: np.ndarray) -> float:
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(correct.astype(int), conf, pos_label=1)) if len(conf) else 0.0


def fit_map(conf: np.ndarray, correct: np.ndarray) -> tuple[list[float], list[float]]:
    """A monotone map from raw confidence to observed accuracy (isotonic regression)."""
    from sklearn.isotonic import IsotonicRegression

    if len(conf) < 2 or len(set(correct.tolist())) < 2:
        return [], []
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, correct.astype(float))
    return [float(x) for x in iso.X_thresholds_], [float(y) for y in iso.y_thresholds_]


def error_upper_bound(errors: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate."""
    from scipy.stats import beta

    return 1.0 if n == 0 else (1.0 if errors >= n else float(beta.ppf(1 - alpha, errors + 1, n - errors)))


def items_needed(accuracy: float, target: float, alpha: float = ALPHA) -> int | None:
    """About how many labelled answers of a label, right `accuracy` of the time, let a threshold of 0 keep the
    precision target (an upper estimate: a higher threshold needs fewer); None when accuracy does not exceed it."""
    if accuracy <= target:
        return None
    lo, hi = 1, 1_000_000
    if error_upper_bound(round((1 - accuracy) * hi), hi, alpha) > 1 - target:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if error_upper_bound(round((1 - accuracy) * mid), mid, alpha) <= 1 - target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def choose_threshold(conf: np.ndarray, correct: np.ndarray, target: float) -> tuple[float | None, dict[str, Any]]:
    """The lowest threshold whose accepted set keeps the error's upper bound within 1 - target."""
    best: tuple[float | None, dict[str, Any]] = (None, {})
    for t in sorted(set(conf.tolist()), reverse=True):
        accepted = conf >= t
        n, errors = int(accepted.sum()), int((~correct[accepted]).sum())
        bound = error_upper_bound(errors, n)
        if bound <= 1 - target:
            best = (t, {"precision_at_threshold": 1 - errors / n, "error_upper_bound": bound, "accepted": n})
    return best


def build_profile(
    task: Task, model: str, samples: list[Sample], n_examples: int, field_accuracy: dict[str, float]
) -> Profile:
    conf = np.array([s.confidence for s in samples], dtype=float)
    correct = np.array([s.correct for s in samples], dtype=bool)
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    cut = int(len(order) * (1 - HELDOUT))
    fit_idx, test_idx = np.array(order[:cut], dtype=int), np.array(order[cut:], dtype=int)
    xs, ys = fit_map(conf[fit_idx], correct[fit_idx])
    held = conf[test_idx]
    held_cal = np.interp(held, xs, ys) if xs else held
    heldout = {
        "n": len(test_idx),
        "ece_raw": ece(held, correct[test_idx]),
        "ece_calibrated": ece(held_cal, correct[test_idx]),
        "brier_raw": brier(held, correct[test_idx]),
        "brier_calibrated": brier(held_cal, correct[test_idx]),
    }
    map_x, map_y = fit_map(conf, correct)  # the map that ships is fitted on everything
    calibrated = np.interp(conf, map_x, map_y) if map_x else conf
    thresholds: dict[str, Threshold] = {}
    groups = sorted({g for s in samples for g in s.groups} | set(_all_groups(task)))
    for group in groups:
        risk = _risk_of_group(task, group)
        rule = task.rule(risk)
        mask = np.array([group in s.groups for s in samples], dtype=bool)
        n = int(mask.sum())
        value, stats = choose_threshold(calibrated[mask], correct[mask], rule.target) if n else (None, {})
        if rule.always_review:
            note = f"{risk}-risk: always reviewed by a person"
        elif value is None:
            best = float(correct[mask].mean()) if n else 0.0
            note = (
                f"the data cannot support {rule.target:.0%} precision: {n} examples, {best:.0%} correct overall"
                "; answers with this label are escalated or reviewed"
            )
        else:
            # 0.0 is a threshold like any other: every answer of the label, however unsure, met the target
            gate = "at any confidence (the target held at every one)" if value <= 0 else f"at confidence >= {value:.3f}"
            note = f"accept {gate}: {stats['accepted']} of {n} would be accepted"
        thresholds[group] = Threshold(
            risk=risk, target=rule.target, always_review=rule.always_review, n=n, threshold=value, note=note, **stats
        )
    return Profile(
        task=task.name,
        task_version=task.version,
        model=model,
        n_examples=n_examples,
        n_valid=len(samples),
        accuracy=float(correct.mean()) if len(samples) else 0.0,
        field_accuracy=field_accuracy,
        reliability_raw=reliability(conf, correct),
        reliability_calibrated=reliability(calibrated, correct),
        ece_raw=ece(conf, correct),
        ece_calibrated=ece(calibrated, correct),
        brier_raw=brier(conf, correct),
        brier_calibrated=brier(calibrated, correct),
        heldout=heldout,
        map_x=map_x,
        map_y=map_y,
        thresholds=thresholds,
    )


def is_correct(output: dict[str, Any] | None, gold: dict[str, Any], field: str, bar: float | None = None) -> bool:
    """The answer's `field` is right: the gold value itself, or with a `bar` (a free-text field: `Task.match_bar`)
    two texts whose token F1 reaches it."""
    if output is None:
        return False
    value, expected = output.get(field), gold.get(field)
    if bar is not None and isinstance(value, str) and isinstance(expected, str):
        return token_f1(value, expected) >= bar
    return bool(value == expected)


def answer_right(task: Task, output: dict[str, Any] | None, gold: dict[str, Any]) -> bool:
    """Every field the gold answer names is right (free text at the task's bar). A gold line may leave out a field
    it does not know (a prompt labelled without its span): that field is not judged."""
    return all(is_correct(output, gold, f, task.match_bar(f)) for f in task.fields if f in gold)


def _all_groups(task: Task) -> list[str]:
    return [f"{f}={label}" for f, labels in task.labels.items() for label in labels] or ["*"]


def _risk_of_group(task: Task, group: str) -> Any:
    if group == "*":
        return task.default_risk
    field, _, label = group.partition("=")
    return task.risk_of(field, label) or task.default_risk
