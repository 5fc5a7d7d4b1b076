"""The trained head: small models fitted on a task's example pool that answer before any language model runs.

A task gets a head when every output field is a label (a logistic regression over TF-IDF word and character
n-grams, and the input's sentence embedding where `train` measured that better: `features.py`) or a span the
task requires copied from the input (a linear-chain CRF over its tokens, `spans.py`). `training.py` fits and
calibrates it out of fold. At run time its answer is validated and judged like any model's, and an input unlike
everything in its pool is not accepted (`novelty.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from slm_desk.contract.calibration import Profile
from slm_desk.contract.results import Tokens
from slm_desk.errors import ModelNotFound
from slm_desk.judge.tiers import TierPolicy
from slm_desk.learn import novelty
from slm_desk.learn.compress import KeepDrop, encode_words
from slm_desk.learn.features import Embed, LabelHead  # heads pickled before it moved there name it here too
from slm_desk.learn.novelty import Familiarity
from slm_desk.learn.spans import Featurize, SpanTagger, featurize
from slm_desk.learn.wordvectors import Context, InContext
from slm_desk.models.protocol import AlwaysReady, Completion, IsCancelled, Messages, OnText

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.store import Store

MODEL_NAME = "label-head"  # the name history rows and calibration profiles have always used for the head


class FeatureRow(BaseModel):
    """One feature set of the label head as `train` measured it out of fold."""

    features: str  # "tfidf" or "tfidf+embeddings"
    accuracy: float
    accept_rate: float
    accepted_precision: float | None
    ms_per_item: float  # predicting, and embedding where it embeds, per input in a batch


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
    pool_read_at: str = ""  # the store's clock when the pool was read: labels resolved after it are new
    embedding_model: str | None = None  # the sentence encoder the head reads (None: TF-IDF alone)
    label_features: str = "tfidf"  # what the label models read: "tfidf" or "tfidf+embeddings"
    compared: list[FeatureRow] = []  # both feature sets measured out of fold, when both could be
    embeddings_note: str = ""  # why embeddings were not measured, when they were not
    without_encoder_ms: float | None = None  # the TF-IDF head with no encoder at all (`--features tfidf`)
    in_context: bool = False  # a text tagger reads words in context (the encoder runs on every input)
    novelty_threshold: float | None = None  # below this similarity to the pool an input goes to review
    novelty_space: novelty.Space | None = None  # what that similarity reads; a report before it: not said
    novelty_held_back: float | None = None  # the share of out-of-fold accepted items the rule sends to review
    warnings: list[str] = []


@dataclass(frozen=True)
class Requires:
    """A task's null_iff rule as the head applies it: `field` is null exactly when `when_field` is one of `equals`
    (guard: no span when safe, a span otherwise, at most `max_chars` long)."""

    field: str
    when_field: str
    equals: tuple[Any, ...]
    max_chars: int


def requirements(task: Task) -> list[Requires]:
    from slm_desk.contract.validators import NullIff

    rules = []
    for rule in task.validators:
        if isinstance(rule, NullIff):
            limit = _max_length(task.output_schema.get("properties", {}).get(rule.field, {}))
            rules.append(Requires(rule.field, rule.when_field, tuple(rule.equals), limit))
    return rules


def _max_length(schema: dict[str, Any]) -> int:
    lengths = [int(o["maxLength"]) for o in [schema, *schema.get("anyOf", [])] if "maxLength" in o]
    return min(lengths) if lengths else 10_000


class Head:
    """The label models and the span tagger of one task, answering every field between them."""

    embedding: str | None = None  # class defaults: heads pickled before embeddings, novelty and compression
    familiarity: Familiarity | None = None
    compressors: list[KeepDrop] = []  # noqa: RUF012 - never mutated; a head pickled before them has none
    rules: list[Requires] = []  # noqa: RUF012 - the same

    def __init__(
        self,
        fields: list[str],
        labels: LabelHead | None,
        spans: SpanTagger | None,
        embedding: str | None = None,
        familiarity: Familiarity | None = None,
        compressors: list[KeepDrop] | None = None,
        rules: list[Requires] | None = None,
    ) -> None:
        self.fields = fields
        self.labels = labels
        self.spans = spans
        self.embedding = embedding  # the embedding model's id, when the label models or the novelty rule read it
        self.familiarity = familiarity
        self.compressors = compressors or []
        self.rules = rules or []

    @property
    def reads_embeddings(self) -> bool:
        return self.embedding is not None

    @property
    def reads_in_context(self) -> Context | None:
        """What a compression tagger reads words in context from (an encoder and how many of its layers), if one
        does."""
        return next((c.context for c in self.compressors if c.context is not None), None)

    def predict(
        self,
        texts: list[str],
        featurized: Featurize = featurize,
        vectors: np.ndarray | None = None,
        encoded: list[np.ndarray] | None = None,
    ) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """For each text: the answer (fields in the schema's order) and each field's confidence. `vectors` are the
        texts' sentence embeddings and `encoded` their words read in context (`read_in_context`), for a head that
        reads them."""
        parts = [
            self.labels.predict(texts, vectors) if self.labels is not None else None,
            self.spans.predict(texts, featurized) if self.spans is not None else None,
            *(compressor.predict(texts, encoded=encoded) for compressor in self.compressors),
        ]
        answers = []
        for row in range(len(texts)):
            merged: dict[str, Any] = {}
            probs: dict[str, float] = {}
            for part in parts:
                if part is not None:
                    merged.update(part[row][0])
                    probs.update(part[row][1])
            for rule in self.rules:  # the task's null_iff rules: an answer that breaks one is no answer
                if merged.get(rule.when_field) in rule.equals:
                    merged[rule.field] = None
                elif merged.get(rule.field) is None and self.spans is not None and rule.field in self.spans.fields:
                    merged[rule.field], probs[rule.field] = self.spans.required(
                        texts[row], rule.field, rule.max_chars, featurized
                    )
            answers.append(({f: merged[f] for f in self.fields}, {f: probs[f] for f in self.fields}))
        return answers

    def margins(self, texts: list[str], vectors: np.ndarray | None = None) -> list[float | None]:
        """How unsure the label models are of each text (the gap between their two likeliest labels); None for a
        head without label fields."""
        if self.labels is None:
            return [None] * len(texts)
        return [float(m) for m in self.labels.margins(texts, vectors)]

    def read_in_context(self, texts: list[str], in_context: InContext | None) -> list[np.ndarray] | None:
        """The texts' words as the encoder reads them in context, once for the text tagger and the novelty rule;
        None for a head that does not read them."""
        context = self.reads_in_context
        if context is None:
            return None
        if in_context is None:
            raise _missing("words in context with", context.model)
        return encode_words(texts, in_context)

    def unfamiliar(
        self, texts: list[str], vectors: np.ndarray | None = None, encoded: list[np.ndarray] | None = None
    ) -> list[str | None]:
        """Why each input is unlike the pool (None when it is like it, or the head has no novelty rule); its
        vectors are the sentence embeddings, or the mean of the words read in context (`encoded`)."""
        if self.familiarity is None:
            return [None] * len(texts)
        if self.familiarity.space == "context":
            vectors = novelty.in_context(encoded) if encoded is not None else None
        return self.familiarity.unfamiliar(texts, vectors)


class HeadBackend(AlwaysReady):
    """The head behind the backend protocol, so the pipeline validates and decides its answers like any model's.
    `embed` gives the inputs' sentence embeddings to a head that reads them."""

    model = MODEL_NAME
    where = "the trained head (this machine)"

    def __init__(self, head: Head, embed: Embed | None = None, in_context: InContext | None = None) -> None:
        self.head = head
        self.embed = embed
        self.in_context = in_context

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        [completion] = self.complete_many(task, [messages[-1]["content"]])
        if on_text is not None:
            on_text(completion.text)
        return completion

    def vectors(self, texts: list[str]) -> np.ndarray | None:
        if not self.head.reads_embeddings:
            return None
        if self.embed is None:
            raise _missing("sentence embeddings from", self.head.embedding)
        return self.embed(texts)

    def complete_many(self, task: Task, texts: list[str]) -> list[Completion]:
        """Every text in one batch: the features of all of them at once are what makes the head fast."""
        vectors = self.vectors(texts)
        encoded = self.head.read_in_context(texts, self.in_context)
        unfamiliar = self.head.unfamiliar(texts, vectors, encoded)
        return [
            Completion(
                text=json.dumps(output, ensure_ascii=False),
                model=MODEL_NAME,
                finish_reason="stop",
                tokens=Tokens(),
                fields=probs,
                unfamiliar=why,
            )
            for (output, probs), why in zip(
                self.head.predict(texts, vectors=vectors, encoded=encoded), unfamiliar, strict=True
            )
        ]


def _missing(reads: str, model: str | None) -> ModelNotFound:
    """What a head says when an encoder it reads is not installed, and the two ways out."""
    return ModelNotFound(
        f"this head reads {reads} {model}, which is not available",
        f"install it (`slm-desk pull {model}`), or retrain the head without it: `slm-desk train TASK --features tfidf`",
    )


def save(store: Store, head: Head, profile: Profile, report: HeadReport, policy: TierPolicy | None) -> None:
    saved = {
        "head": head,
        "profile": profile.model_dump_json(),
        "policy": policy.model_dump_json() if policy is not None else None,
    }
    store.save_head(report.task, report.task_version, report.model_dump_json(), saved)


@dataclass(frozen=True)
class Loaded:
    backend: HeadBackend
    profile: Profile
    report: HeadReport
    policy: TierPolicy | None


def load_policy(store: Store, task: Task) -> TierPolicy | None:
    """The tier policy the newest head of this task version was saved with, or None."""
    row = store.head(task.name, task.version)
    policy = row[1].get("policy") if row is not None else None
    return TierPolicy.model_validate_json(policy) if policy else None


def load(
    store: Store,
    task: Task,
    embedder: Callable[[str], Embed | None] | None = None,
    reader: Callable[[str, int | None], InContext | None] | None = None,
) -> Loaded | None:
    """The newest head trained for this task version, or None. `embedder` gives the embedding function of a model
    id (None when that model is not available) for a head that reads embeddings; `reader` its words-in-context
    function (of a model id and how many of its first layers), for a head whose compression tagger reads them."""
    row = store.head(task.name, task.version)
    if row is None:
        return None
    report_json, saved, _ = row
    head = saved["head"]
    if isinstance(head, LabelHead):  # a head trained before span fields existed: labels only
        head = Head(list(head.models), head, None)
    policy = saved.get("policy")
    embed = embedder(head.embedding) if head.embedding is not None and embedder is not None else None
    context = head.reads_in_context
    in_context = reader(context.model, context.layers) if context is not None and reader is not None else None
    return Loaded(
        HeadBackend(head, embed, in_context),
        Profile.model_validate_json(saved["profile"]),
        HeadReport.model_validate_json(report_json),
        TierPolicy.model_validate_json(policy) if policy else None,
    )
