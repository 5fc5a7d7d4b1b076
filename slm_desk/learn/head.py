"""The trained head: small models fitted on a task's example pool that answer before any language model runs.

A task gets a head when every output field is a label (a logistic regression over the retrieval features,
TF-IDF word and character n-grams) or a span the task requires copied from the input (a linear-chain CRF over
its tokens, `spans.py`). `slm-desk train TASK` calibrates it out of fold: the pool is cut into folds, each fold
is predicted by a head fitted on the others, and those predictions set the isotonic map and the per-label
Clopper-Pearson thresholds that `calibrate` sets for a model; the head that ships is then fitted on the whole
pool. At run time its answer is validated and judged like any model's.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from slm_desk.contract.calibration import Profile, Sample, build_profile
from slm_desk.contract.results import Tokens
from slm_desk.errors import UsageError
from slm_desk.judge.tiers import Scored, TierPolicy
from slm_desk.learn.retrieval import FEATURES, featurizer
from slm_desk.learn.spans import Featurize, SpanTagger, featurize
from slm_desk.models.protocol import AlwaysReady, Completion, IsCancelled, Messages, OnText

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.store import Store

MIN_ITEMS = 30
MODEL_NAME = "label-head"  # the name history rows and calibration profiles have always used for the head
LABEL_C = 30.0  # route-ticket's eval set, head fitted on its whole public pool: 95.7 % at C=30, 95.0 % at C=10


def folds_for(n: int) -> int:
    """Out-of-fold calibration: 5 folds for a small pool (every item counts), 3 for a large one (time)."""
    return 5 if n <= 3000 else 3


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
    folds: int = 1
    field_kinds: dict[str, str] = {}
    skipped: int = 0  # pool items whose span values are not in their input: nothing to tag
    pool_signature: list[int] = []  # the pool as it was trained on (Store.pool_signature): stale when it changes


class LabelHead:
    """Per label field, a logistic regression over shared TF-IDF features. (Pickled in stores as it is named.)"""

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


class Head:
    """The label models and the span tagger of one task, answering every field between them."""

    def __init__(self, fields: list[str], labels: LabelHead | None, spans: SpanTagger | None) -> None:
        self.fields = fields
        self.labels = labels
        self.spans = spans

    def predict(
        self, texts: list[str], featurized: Featurize = featurize
    ) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """For each text: the answer (fields in the schema's order) and each field's confidence."""
        labelled = self.labels.predict(texts) if self.labels is not None else [({}, {})] * len(texts)
        spanned = self.spans.predict(texts, featurized) if self.spans is not None else [({}, {})] * len(texts)
        answers = []
        for (lo, lp), (so, sp) in zip(labelled, spanned, strict=True):
            merged, probs = {**lo, **so}, {**lp, **sp}
            answers.append(({f: merged[f] for f in self.fields}, {f: probs[f] for f in self.fields}))
        return answers


class HeadBackend(AlwaysReady):
    """The head behind the backend protocol, so the pipeline validates and decides its answers like any model's."""

    model = MODEL_NAME
    where = "the trained head (this machine)"

    def __init__(self, head: Head) -> None:
        self.head = head

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        [completion] = self.complete_many(task, [messages[-1]["content"]])
        if on_text is not None:
            on_text(completion.text)
        return completion

    def complete_many(self, task: Task, texts: list[str]) -> list[Completion]:
        """Every text in one batch: the features of all of them at once are what makes the head fast."""
        return [
            Completion(
                text=json.dumps(output, ensure_ascii=False),
                model=MODEL_NAME,
                finish_reason="stop",
                tokens=Tokens(),
                fields=probs,
            )
            for output, probs in self.head.predict(texts)
        ]


def _fit(task: Task, items: list[dict[str, Any]], featurized: Featurize = featurize) -> Head:
    from sklearn.linear_model import LogisticRegression

    kinds = task.head_fields
    texts = [item["input"] for item in items]
    labels = None
    label_fields = [f for f, kind in kinds.items() if kind == "label"]
    if label_fields:
        features = featurizer(texts)
        x = features.transform(texts)
        models = {}
        for field in label_fields:
            y = [str(item["output"][field]) for item in items]
            if len(set(y)) < 2:
                raise UsageError(
                    f"every pool item of {task.name} has {field}={y[0]!r}: a classifier needs at least two labels",
                    f"add examples of other labels: slm-desk examples add {task.name} FILE.jsonl",
                )
            models[field] = LogisticRegression(C=LABEL_C, max_iter=3000).fit(x, y)
        labels = LabelHead(features, models)
    span_fields = [f for f, kind in kinds.items() if kind == "span"]
    spans = SpanTagger.fit(span_fields, texts, [i["output"] for i in items], featurized) if span_fields else None
    return Head(list(kinds), labels, spans)


@dataclass(frozen=True)
class Trained:
    head: Head
    profile: Profile
    report: HeadReport
    scored: list[Scored]
    ms_per_item: float


def train(
    task: Task, items: list[dict[str, Any]], seed: int = 0, progress: Callable[[str], None] | None = None
) -> Trained:
    """Calibrate on out-of-fold predictions of the pool, then fit the head that ships on all of it."""
    from slm_desk.learn.spans import bio_tags, tokens

    if not task.head_fields:
        free = [f for f in task.fields if f not in task.labels]
        raise UsageError(
            f"{task.name} has fields a head cannot learn ({', '.join(free)}): they are neither labels nor copied "
            "verbatim from the input",
            "such tasks learn through retrieved examples (`slm-desk examples add`) or `slm-desk tune`",
        )
    spans = [f for f, kind in task.head_fields.items() if kind == "span"]
    usable = [i for i in items if not spans or bio_tags(i["input"], i["output"], spans, tokens(i["input"])) is not None]
    if len(usable) < MIN_ITEMS:
        raise UsageError(
            f"{task.name} has {len(usable)} usable pool items; the head needs at least {MIN_ITEMS} (better 500+)",
            f"add labelled examples: slm-desk examples add {task.name} FILE.jsonl",
        )
    started = time.perf_counter()
    memo = cache(featurize)  # each input's span features once, not once per fold; gone when training ends
    order = usable[:]
    random.Random(seed).shuffle(order)
    k = folds_for(len(order))
    predicted: list[tuple[dict[str, Any], dict[str, float]]] = []
    ordered: list[dict[str, Any]] = []
    for fold in range(k):
        if progress:
            progress(f"fold {fold + 1}/{k}: fitting on {len(order) - len(order[fold::k])} items")
        held = order[fold::k]
        fitted = _fit(task, [item for i, item in enumerate(order) if i % k != fold], memo)
        predicted += fitted.predict([item["input"] for item in held], memo)
        ordered += held
    samples, right = [], dict.fromkeys(task.fields, 0)
    for item, (output, probs) in zip(ordered, predicted, strict=True):
        for field in task.fields:
            right[field] += output[field] == item["output"].get(field)
        correct = all(output[f] == item["output"].get(f) for f in task.fields)
        samples.append(Sample(min(probs.values()), correct, [g for g, _ in task.groups(output)]))
    n = len(ordered)
    profile = build_profile(task, MODEL_NAME, samples, n, {f: c / n for f, c in right.items()})
    scored = [
        Scored(item["input"], item["output"], output, profile.apply(s.confidence), s.correct, _accepted(profile, s))
        for item, (output, _), s in zip(ordered, predicted, samples, strict=True)
    ]
    if progress:
        progress(f"fitting the head on all {n} items")
    head = _fit(task, order, memo)
    timed = [item["input"] for item in order[:1000]]
    tick = time.perf_counter()
    head.predict(timed)
    ms = (time.perf_counter() - tick) * 1000 / len(timed)
    accepted = [s for s in scored if s.accepted]
    kinds = task.head_fields
    parts = []
    if "label" in kinds.values():
        parts.append(
            "labels: logistic regression over TF-IDF "
            + ", ".join(f"{k} {v['ngram_range']}" for k, v in FEATURES.items())
        )
    if "span" in kinds.values():
        parts.append("spans: linear-chain CRF over tokens (BIO tags; word, shape, class and neighbour features)")
    report = HeadReport(
        task=task.name,
        task_version=task.version,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pool_size=len(items),
        n_train=n,
        n_heldout=n,
        heldout_accuracy=sum(s.correct for s in scored) / n,
        heldout_accept_rate=len(accepted) / n,
        heldout_accepted_precision=sum(s.correct for s in accepted) / len(accepted) if accepted else None,
        features="; ".join(parts),
        train_seconds=time.perf_counter() - started,
        folds=k,
        field_kinds=dict(kinds),
        skipped=len(items) - len(usable),
    )
    return Trained(head, profile, report, scored, ms)


def _accepted(profile: Profile, sample: Sample) -> bool:
    confidence = profile.apply(sample.confidence)
    for group in sample.groups:
        rule = profile.thresholds.get(group)
        if rule is None or rule.always_review or rule.threshold is None or confidence < rule.threshold:
            return False
    return True


def save(store: Store, trained: Trained, policy: TierPolicy | None) -> None:
    saved = {
        "head": trained.head,
        "profile": trained.profile.model_dump_json(),
        "policy": policy.model_dump_json() if policy is not None else None,
    }
    store.save_head(trained.report.task, trained.report.task_version, trained.report.model_dump_json(), saved)


@dataclass(frozen=True)
class Loaded:
    backend: HeadBackend
    profile: Profile
    report: HeadReport
    policy: TierPolicy | None


def load(store: Store, task: Task) -> Loaded | None:
    """The newest head trained for this task version, or None."""
    row = store.head(task.name, task.version)
    if row is None:
        return None
    report_json, saved, _ = row
    head = saved["head"]
    if isinstance(head, LabelHead):  # a head trained before span fields existed: labels only
        head = Head(list(head.models), head, None)
    policy = saved.get("policy")
    return Loaded(
        HeadBackend(head),
        Profile.model_validate_json(saved["profile"]),
        HeadReport.model_validate_json(report_json),
        TierPolicy.model_validate_json(policy) if policy else None,
    )
