"""The label head: a classifier trained on a task's example pool that answers label tasks before the LLM runs.

For a task whose every output field is a label, `slm-desk train TASK` fits one logistic regression per field
over the retrieval features (TF-IDF word and character n-grams), keeps a held-out share of the pool to
calibrate it (the same isotonic map and Clopper-Pearson thresholds as `calibrate`), and stores both with the
task version. At run time the head answers first; its answer stands only when its calibrated probability clears
the threshold of the predicted label. Otherwise the LLM runs, with retrieved examples, then escalation.
"""

from __future__ import annotations

import json
import pickle
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from slm_desk.backends import Completion, IsCancelled, Messages, OnText
from slm_desk.calibration import Profile, Sample, build_profile
from slm_desk.errors import UsageError
from slm_desk.results import Tokens
from slm_desk.retrieval import FEATURES, featurizer

if TYPE_CHECKING:
    from slm_desk.store import Store
    from slm_desk.tasks import Task

HELDOUT = 0.2
MIN_ITEMS = 30
MODEL_NAME = "label-head"


class HeadReport(BaseModel):
    task: str
    task_version: int
    trained_at: str
    pool_size: int
    n_train: int
    n_heldout: int
    heldout_accuracy: float
    heldout_accept_rate: float
    heldout_accepted_precision: float | None
    features: str
    train_seconds: float


class LabelHead:
    """Per label field, a logistic regression over shared TF-IDF features."""

    def __init__(self, features: Any, models: dict[str, Any]) -> None:
        self.features = features
        self.models = models

    def predict(self, texts: list[str]) -> list[tuple[dict[str, str], dict[str, float]]]:
        """For each text: the label per field and its probability."""
        x = self.features.transform(texts)
        per_field = {f: m.predict_proba(x) for f, m in self.models.items()}
        answers = []
        for row in range(len(texts)):
            output, probs = {}, {}
            for field, model in self.models.items():
                best = int(per_field[field][row].argmax())
                output[field] = str(model.classes_[best])
                probs[field] = float(per_field[field][row][best])
            answers.append((output, probs))
        return answers


class HeadBackend:
    """The head behind the backend protocol, so the pipeline validates and decides its answers like any model's."""

    model = MODEL_NAME
    where = "the trained label head (this machine)"

    def __init__(self, head: LabelHead) -> None:
        self.head = head

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        [(output, probs)] = self.head.predict([messages[-1]["content"]])
        text = json.dumps(output, ensure_ascii=False)
        if on_text is not None:
            on_text(text)
        return Completion(text=text, model=MODEL_NAME, finish_reason="stop", tokens=Tokens(), fields=probs)


def _fit(task: Task, items: list[dict[str, Any]]) -> LabelHead:
    from sklearn.linear_model import LogisticRegression

    texts = [item["input"] for item in items]
    features = featurizer(texts)
    x = features.transform(texts)
    models = {}
    for field in task.labels:
        y = [str(item["output"][field]) for item in items]
        if len(set(y)) < 2:
            raise UsageError(
                f"every pool item of {task.name} has {field}={y[0]!r}: a classifier needs at least two labels",
                f"add examples of other labels: slm-desk examples add {task.name} FILE.jsonl",
            )
        models[field] = LogisticRegression(C=10.0, max_iter=2000).fit(x, y)
    return LabelHead(features, models)


def train(task: Task, items: list[dict[str, Any]], seed: int = 0) -> tuple[LabelHead, Profile, HeadReport]:
    """Fit on most of the pool, calibrate on the held-out rest; the shipped head is the one calibrated."""
    if not task.is_label_task:
        raise UsageError(
            f"{task.name} is not a label task: its output has fields that are not labels",
            "the head is for tasks whose every field is a label; other tasks learn through retrieved examples",
        )
    if len(items) < MIN_ITEMS:
        raise UsageError(
            f"{task.name} has {len(items)} pool items; the head needs at least {MIN_ITEMS} (better 500+)",
            f"add labelled examples: slm-desk examples add {task.name} FILE.jsonl",
        )
    started = time.perf_counter()
    order = items[:]
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * HELDOUT))
    held, fit_on = order[:cut], order[cut:]
    head = _fit(task, fit_on)
    predictions = head.predict([item["input"] for item in held])
    samples, right = [], dict.fromkeys(task.fields, 0)
    for item, (output, probs) in zip(held, predictions, strict=True):
        for field in task.fields:
            right[field] += output[field] == item["output"].get(field)
        correct = all(output[f] == item["output"].get(f) for f in task.fields)
        samples.append(Sample(min(probs.values()), correct, [g for g, _ in task.groups(output)]))
    profile = build_profile(task, MODEL_NAME, samples, len(held), {f: n / len(held) for f, n in right.items()})
    accepted = [s for s in samples if _accepted(profile, s)]
    report = HeadReport(
        task=task.name,
        task_version=task.version,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pool_size=len(items),
        n_train=len(fit_on),
        n_heldout=len(held),
        heldout_accuracy=sum(s.correct for s in samples) / len(samples),
        heldout_accept_rate=len(accepted) / len(samples),
        heldout_accepted_precision=sum(s.correct for s in accepted) / len(accepted) if accepted else None,
        features="logistic regression over TF-IDF " + ", ".join(f"{k} {v['ngram_range']}" for k, v in FEATURES.items()),
        train_seconds=time.perf_counter() - started,
    )
    return head, profile, report


def _accepted(profile: Profile, sample: Sample) -> bool:
    confidence = profile.apply(sample.confidence)
    for group in sample.groups:
        rule = profile.thresholds.get(group)
        if rule is None or rule.always_review or rule.threshold is None or confidence < rule.threshold:
            return False
    return True


def save(store: Store, head: LabelHead, profile: Profile, report: HeadReport) -> None:
    blob = pickle.dumps({"head": head, "profile": profile.model_dump_json()})
    store.save_head(report.task, report.task_version, report.model_dump_json(), blob)


def load(store: Store, task: Task) -> tuple[HeadBackend, Profile, HeadReport] | None:
    """The newest head trained for this task version, or None. (The pickle is our own, in the user's 0600 store.)"""
    row = store.head(task.name, task.version)
    if row is None:
        return None
    report_json, blob, _ = row
    saved = pickle.loads(blob)  # noqa: S301 - written by `train` into the user's private store, never downloaded
    return (
        HeadBackend(saved["head"]),
        Profile.model_validate_json(saved["profile"]),
        HeadReport.model_validate_json(report_json),
    )
