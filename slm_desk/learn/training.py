"""Fitting a head on a task's example pool: out of fold, with and without sentence embeddings, then on all of it.

`slm-desk train TASK` cuts the pool into folds; each fold is predicted by a head fitted on the others. Where the
task has label fields and an embedding model is available, the label models are fitted twice per fold, on TF-IDF
alone and on TF-IDF beside the sentence embedding, and the more accurate out of fold is kept (the faster, TF-IDF,
unless embeddings win by more than `EMBEDDINGS_MUST_WIN`). The kept set's out-of-fold predictions set the
isotonic map and the per-label Clopper-Pearson thresholds that `calibrate` sets for a model, and the novelty
rule's threshold; the head that ships is then fitted on the whole pool.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from slm_desk.contract.calibration import Profile, Sample, answer_right, build_profile, is_correct
from slm_desk.errors import UsageError
from slm_desk.judge.tiers import Scored
from slm_desk.learn import novelty
from slm_desk.learn.compress import KeepDrop, encode_words
from slm_desk.learn.features import Embed, FeatureSet, LabelHead, fit_labels
from slm_desk.learn.head import MODEL_NAME, FeatureRow, Head, HeadReport, requirements
from slm_desk.learn.retrieval import FEATURES
from slm_desk.learn.spans import Featurize, SpanTagger, bio_tags, featurize, tokens
from slm_desk.learn.tokenfeatures import tokens as compress_tokens
from slm_desk.learn.wordvectors import Encoder, InContext, WordVectors

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task

MIN_ITEMS = 30
EMBEDDINGS_MUST_WIN = 0.005  # out-of-fold accuracy: within half a point, the faster TF-IDF head is kept
PRICED = 200  # inputs embedded afresh to price the embedding head in ms per item
# label values that mean "none of the others": rare in a pool, the head learns little of what they cover
NONE_OF_THESE = {"other", "others", "none", "oos", "out_of_scope", "out-of-scope", "unknown", "no_intent", "irrelevant"}
RARE = 0.02  # route-ticket's "other" is 4 % of its pool; the public benchmark that showed the problem had 0.7 %
Choice = Literal["auto", "tfidf", "embeddings"]


@dataclass(frozen=True)
class Embedding:
    """Where a head's sentence embeddings come from: `vectors` may read a cache, `fresh` never does (pricing).
    `words` reads the encoder's static word vectors and `in_context` runs its first layers for each word in its text
    (a compression head's features; no static vectors for a non-BERT encoder)."""

    model: str
    vectors: Embed
    fresh: Embed
    words: Callable[[], WordVectors | None] = lambda: None
    in_context: Encoder | None = None


@dataclass(frozen=True)
class Trained:
    head: Head
    profile: Profile
    report: HeadReport
    scored: list[Scored]
    ms_per_item: float


@dataclass
class _Measured:
    """One feature set's out-of-fold answers, in `ordered` order, and what they came to."""

    features: FeatureSet
    predicted: list[tuple[dict[str, Any], dict[str, float]]]
    profile: Profile | None = None
    samples: list[Sample] | None = None
    accuracy: float = 0.0
    predict_seconds: float = 0.0  # predicting the held-out folds, embeddings given


def folds_for(n: int) -> int:
    """Out-of-fold calibration: 5 folds for a small pool (every item counts), 3 for a large one (time)."""
    return 5 if n <= 3000 else 3


def _check(task: Task, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool items a head can learn from, or why there is no head to train."""
    if not task.head_fields:
        copied = {f for v in task.validators if v.kind == "verbatim" for f in getattr(v, "fields", [])}
        free = [f for f in task.fields if f not in task.labels and f not in copied and f not in task.compress]
        fields = ", ".join(json.dumps(f) for f in free)
        raise UsageError(
            f"{task.name} has fields a head cannot learn ({', '.join(free)}): they are neither labels nor declared "
            "copied verbatim from the input, nor compressed from it",
            f'if they are copied from the input, add to the task file: [[validators]] kind = "verbatim" '
            f"fields = [{fields}] (then `slm-desk train` learns them as spans); if they are written mostly in the "
            f"input's own words, `compress = [{fields}]` (a head keeps or drops each input word); other free text "
            "learns through retrieved examples (`slm-desk examples add`) or `slm-desk tune`",
        )
    spans = [f for f, kind in task.head_fields.items() if kind == "span"]
    # a line that leaves the span fields out (a prompt labelled without its span) still teaches the labels
    usable = [
        i
        for i in items
        if not _knows(i, spans) or bio_tags(i["input"], i["output"], spans, tokens(i["input"])) is not None
    ]
    if len(usable) < MIN_ITEMS:
        raise UsageError(
            f"{task.name} has {len(usable)} usable pool items; the head needs at least {MIN_ITEMS} (better 500+)",
            f"add labelled examples: slm-desk examples add {task.name} FILE.jsonl",
        )
    for field in (f for f, kind in task.head_fields.items() if kind == "label"):
        seen = {str(i["output"][field]) for i in usable if field in i["output"]}
        if len(seen) < 2:
            raise UsageError(
                f"every pool item of {task.name} has {field}={next(iter(seen))!r}: a classifier needs at least two "
                "labels",
                f"add examples of other labels: slm-desk examples add {task.name} FILE.jsonl",
            )
    return usable


def _knows(item: dict[str, Any], fields: list[str]) -> bool:
    """Whether a pool line gives every one of `fields` (a line may leave out what it does not know)."""
    return all(f in item["output"] for f in fields)


def _labels(task: Task, items: list[dict[str, Any]], vectors: np.ndarray | None) -> LabelHead | None:
    fields = [f for f, kind in task.head_fields.items() if kind == "label"]
    if not fields:
        return None
    known = [n for n, i in enumerate(items) if _knows(i, fields)]
    return fit_labels(
        fields,
        [items[n]["input"] for n in known],
        [items[n]["output"] for n in known],
        vectors[known] if vectors is not None else None,
    )


def _spans(task: Task, items: list[dict[str, Any]], featurized: Featurize) -> SpanTagger | None:
    fields = [f for f, kind in task.head_fields.items() if kind == "span"]
    known = [i for i in items if _knows(i, fields)]
    if not fields or not known:
        return None
    return SpanTagger.fit(fields, [i["input"] for i in known], [i["output"] for i in known], featurized)


def _compressors(
    task: Task,
    items: list[dict[str, Any]],
    words: WordVectors | None = None,
    encoder: Encoder | None = None,
    like: list[KeepDrop] | None = None,
) -> list[KeepDrop]:
    """A keep/drop tagger per compressed field, on the lines that give it (each input as the task reads it): what
    it reads (nothing, the static `words`, those and the `encoder`'s words in context) and its keep rule measured on
    inner folds of `items`; or, `like` the whole pool's taggers, each refitted with their choices (a fold's)."""
    taggers = []
    for n, field in enumerate(f for f, kind in task.head_fields.items() if kind == "compress"):
        known = [i for i in items if isinstance(i["output"].get(field), str)]
        texts, targets = [task.read(i["input"])[0] for i in known], [i["output"][field] for i in known]
        if like is not None:
            taggers.append(like[n].refitted(texts, targets, encoder))
        else:
            taggers.append(KeepDrop.fit(field, texts, targets, words, encoder))
    return taggers


def _remembered(in_context: InContext) -> InContext:
    """`in_context` that runs the encoder once per text while training (float16 rows: a long report's 200 words
    hold 150 KB)."""
    seen: dict[tuple[str, ...], np.ndarray] = {}

    def remembered(texts: list[list[str]]) -> list[np.ndarray]:
        missing = list(dict.fromkeys(tuple(t) for t in texts if tuple(t) not in seen))
        for words, rows in zip(missing, in_context([list(m) for m in missing]) if missing else [], strict=True):
            seen[words] = rows.astype(np.float16)
        return [seen[tuple(t)].astype(np.float32) for t in texts]

    return remembered


def train(
    task: Task,
    items: list[dict[str, Any]],
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    embedding: Embedding | None = None,
    choice: Choice = "auto",
    embeddings_note: str = "",
    steps: Callable[[int, int], None] | None = None,
) -> Trained:
    """Calibrate on out-of-fold predictions of the pool, then fit the head that ships on all of it. With an
    `embedding` source and label fields, both feature sets are measured (`choice` can fix one). `steps` hears
    (steps done, steps in all) as each step ends: embedding the pool, each fold, the final fit."""
    say = progress or (lambda line: None)
    step = steps or (lambda done, total: None)
    usable = _check(task, items)
    started = time.perf_counter()
    memo = cache(featurize)  # each input's span features once, not once per fold; gone when training ends
    order = usable[:]
    random.Random(seed).shuffle(order)
    k = folds_for(len(order))
    has_labels = "label" in task.head_fields.values()
    if choice == "embeddings" and embedding is None:
        raise UsageError(
            f"--features embeddings needs an embedding model, and none is available ({embeddings_note})",
            "scripts/install.sh installs the default one; or `slm-desk pull all-minilm-l6-v2`",
        )
    # with an encoder, the novelty rule reads embeddings whatever the label models read: measured on route-ticket's
    # pool, they tell 99 % of off-topic inputs from banking queries, TF-IDF about half
    use_vectors = embedding is not None and choice != "tfidf"
    # a compression head's word vectors are a table lookup, not the encoder: they stay with --features tfidf; its
    # words in context run the encoder's first layers on each input: they do not
    compresses = embedding is not None and "compress" in task.head_fields.values()
    words = embedding.words() if embedding is not None and compresses else None
    encoder = None
    if use_vectors and compresses and embedding is not None and embedding.in_context is not None:
        encoder = dataclasses.replace(embedding.in_context, in_context=_remembered(embedding.in_context.in_context))
    total, done = int(use_vectors) + int(words is not None or encoder is not None) + k + 1, 0
    step(done, total)
    # the shipped text taggers first: what each reads and its keep rule, chosen on inner folds of the whole pool, are
    # the folds' below too
    measuring = embedding.model if embedding is not None and (words is not None or encoder is not None) else None
    if measuring is not None:
        what = f"measuring {measuring} word vectors for the text, alone and in context"
        say(f"{what}, on inner folds of {len(order)} items")
    compressors = _compressors(task, order, words, encoder)
    if measuring is not None:
        done += 1
        step(done, total)
    # a head whose text tagger reads words in context and that has no label model measures novelty on what the
    # tagger read: one encoder pass an input, not two (3,000 TREC descriptions through `run --jsonl`: 300 a second
    # against 79). It tells other jobs' inputs from TREC descriptions about as well (rewrite-query's pool; flagged:
    # held-out descriptions 2.0 %, banking queries 42 %, bug reports 91 %, support messages 92 %; the sentence
    # embeddings 0.7 %, 50 %, 97 %, 37 %)
    in_context = encoder if encoder is not None and any(c.context is not None for c in compressors) else None
    vectors = None
    if use_vectors and (has_labels or in_context is None):
        assert embedding is not None
        say(f"embedding {len(order)} pool items with {embedding.model}")
        vectors = embedding.vectors([i["input"] for i in order])
        done += 1
        step(done, total)
    elif use_vectors:
        total -= 1
    sets: list[FeatureSet] = ["tfidf+embeddings"] if has_labels and choice == "embeddings" else ["tfidf"]
    if has_labels and use_vectors and choice == "auto":
        sets = ["tfidf", "tfidf+embeddings"]
    measured = {name: _Measured(name, []) for name in sets}
    ordered: list[dict[str, Any]] = []
    fold_of: list[int] = []
    for fold in range(k):
        held = [i for i in range(len(order)) if i % k == fold]
        kept = [i for i in range(len(order)) if i % k != fold]
        say(f"fold {fold + 1}/{k}: fitting on {len(kept)} items" + (", both feature sets" if len(sets) > 1 else ""))
        spans = _spans(task, [order[i] for i in kept], memo)
        in_fold = _compressors(task, [order[i] for i in kept], encoder=encoder, like=compressors)
        texts = [task.read(order[i]["input"])[0] for i in held]
        for name, m in measured.items():
            v = vectors if name == "tfidf+embeddings" else None
            labels = _labels(task, [order[i] for i in kept], v[kept] if v is not None else None)
            fitted = Head(list(task.head_fields), labels, spans, compressors=in_fold, rules=requirements(task))
            tick = time.perf_counter()
            encoded = fitted.read_in_context(texts, encoder.in_context if encoder is not None else None)
            m.predicted += fitted.predict(texts, memo, v[held] if v is not None else None, encoded)
            m.predict_seconds += time.perf_counter() - tick
        ordered += [order[i] for i in held]
        fold_of += [fold] * len(held)
        done += 1
        step(done, total)
    for m in measured.values():
        _calibrate(task, m, ordered)
    best = _choose(measured)
    say(f"fitting the head on all {len(order)} items ({best.features})")
    head = Head(
        list(task.head_fields),
        _labels(task, order, vectors if best.features == "tfidf+embeddings" else None),
        _spans(task, order, memo),
        embedding.model if vectors is not None and embedding is not None else None,
        compressors=compressors,
        rules=requirements(task),
    )
    assert best.profile is not None and best.samples is not None
    accepted = [_accepted(best.profile, s) for s in best.samples]
    position = {id(item): n for n, item in enumerate(order)}
    in_order = [position[id(item)] for item in ordered]
    own_vectors = vectors[in_order] if vectors is not None else None
    space: novelty.Space = "embeddings"
    if vectors is None and in_context is not None:
        read = [task.read(i["input"])[0] for i in ordered]
        own_vectors, space = novelty.in_context(encode_words(read, in_context.in_context)), "context"
    head.familiarity, own = novelty.fit([i["input"] for i in ordered], own_vectors, fold_of, accepted, space)
    familiar = [bool(s >= head.familiarity.threshold) for s in own]  # what the rule holds back, out of fold
    step(total, total)
    scored = [
        Scored(item["input"], item["output"], output, best.profile.apply(s.confidence), s.correct, a and f, f)
        for item, (output, _), s, a, f in zip(ordered, best.predicted, best.samples, accepted, familiar, strict=True)
    ]
    embed_ms = 0.0  # each input encoded afresh (the caches kept while training are no help to new inputs)
    if vectors is not None and embedding is not None:
        embed_ms += _ms_afresh(embedding.fresh, [i["input"] for i in order[:PRICED]])
    if head.reads_in_context and embedding is not None and embedding.in_context is not None:
        words_of = [[t[0] for t in compress_tokens(task.read(i["input"])[0])] for i in order[:PRICED]]
        embed_ms += _ms_afresh(embedding.in_context.in_context, words_of)
    ms = {name: m.predict_seconds * 1000 / len(ordered) + embed_ms for name, m in measured.items()}
    held_back = sum(a and not f for a, f in zip(accepted, familiar, strict=True)) / max(1, sum(accepted))
    kept_scored = [s for s in scored if s.accepted]
    n = len(ordered)
    report = HeadReport(
        task=task.name,
        task_version=task.version,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pool_size=len(items),
        n_train=n,
        n_heldout=n,
        heldout_accuracy=best.accuracy,
        heldout_accept_rate=len(kept_scored) / n,
        heldout_accepted_precision=sum(s.correct for s in kept_scored) / len(kept_scored) if kept_scored else None,
        features=_describe(task, head),
        train_seconds=time.perf_counter() - started,
        folds=k,
        field_kinds=dict(task.head_fields),
        skipped=len(items) - len(usable),
        embedding_model=head.embedding,
        label_features=best.features,
        compared=[_row(m, ms[name]) for name, m in measured.items()] if len(measured) > 1 else [],
        embeddings_note="" if use_vectors else "--features tfidf" if choice == "tfidf" else embeddings_note,
        without_encoder_ms=measured[sets[0]].predict_seconds * 1000 / len(ordered) if sets[0] == "tfidf" else None,
        in_context=head.reads_in_context is not None,
        novelty_threshold=head.familiarity.threshold,
        novelty_space=head.familiarity.space,
        novelty_held_back=held_back,
        warnings=_rare_none(task, usable),
    )
    return Trained(head, best.profile, report, scored, ms[best.features])


def _calibrate(task: Task, m: _Measured, ordered: list[dict[str, Any]]) -> None:
    samples, right, judged = [], dict.fromkeys(task.fields, 0), dict.fromkeys(task.fields, 0)
    for item, (output, probs) in zip(ordered, m.predicted, strict=True):
        for field in (f for f in task.fields if f in item["output"]):
            judged[field] += 1
            right[field] += is_correct(output, item["output"], field, task.match_bar(field))
        correct = answer_right(task, output, item["output"])
        samples.append(Sample(min(probs.values()), correct, [g for g, _ in task.groups(output)]))
    n = len(ordered)
    m.samples = samples
    m.profile = build_profile(task, MODEL_NAME, samples, n, {f: right[f] / max(1, judged[f]) for f in task.fields})
    m.accuracy = sum(s.correct for s in samples) / n


def _choose(measured: dict[FeatureSet, _Measured]) -> _Measured:
    """The more accurate feature set out of fold; TF-IDF (the faster) unless embeddings win by more than a margin."""
    tfidf, both = measured.get("tfidf"), measured.get("tfidf+embeddings")
    if tfidf is None or both is None:
        return tfidf or both  # type: ignore[return-value]
    return both if both.accuracy > tfidf.accuracy + EMBEDDINGS_MUST_WIN else tfidf


def _ms_afresh(run: Callable[[Any], Any], sample: list[Any]) -> float:
    """Milliseconds an item for `run` (an encoder, no cache) on `sample`."""
    tick = time.perf_counter()
    run(sample)
    return (time.perf_counter() - tick) * 1000 / len(sample)


def _row(m: _Measured, ms: float) -> FeatureRow:
    assert m.profile is not None and m.samples is not None
    accepted = [s for s in m.samples if _accepted(m.profile, s)]
    return FeatureRow(
        features=m.features,
        accuracy=m.accuracy,
        accept_rate=len(accepted) / len(m.samples),
        accepted_precision=sum(s.correct for s in accepted) / len(accepted) if accepted else None,
        ms_per_item=ms,
    )


def _describe(task: Task, head: Head) -> str:
    kinds = task.head_fields
    parts = []
    if "label" in kinds.values():
        tfidf = ", ".join(f"{k} {v['ngram_range']}" for k, v in FEATURES.items())
        reads = head.labels is not None and head.labels.reads_embeddings
        beside = f" beside {head.embedding} sentence embeddings" if reads else ""
        parts.append(f"labels: logistic regression over TF-IDF {tfidf}{beside}")
    if "span" in kinds.values():
        parts.append("spans: linear-chain CRF over tokens (BIO tags; word, shape, class and neighbour features)")
    if "compress" in kinds.values():
        reading = next((c.words.model for c in head.compressors if c.words is not None), None)
        meaning = f", its {reading} word vector" if reading else ""
        if head.reads_in_context:
            meaning += f"{',' if reading else ', its'} vector in context from {head.reads_in_context.reads()}"
        told = next((c.adds for c in head.compressors if c.reads_told and c.adds is not None), None)
        if told is not None:
            meaning += f", how likely the answer is to hold it ({len(told.vocabulary)} common answer words)"
        adding = next((c.add_at for c in head.compressors if c.adds is not None and c.add_at is not None), None)
        added = f", then those words it lacks at p >= {adding:g} (measured better on inner folds)" if adding else ""
        parts.append(
            "text: each input word kept or dropped (logistic regression over the word, its rarity, position "
            f"and neighbours{meaning}, and how often the pool kept it){added}"
        )
    if head.familiarity is not None:
        space = {
            "embeddings": f"{head.embedding} embeddings",
            "tfidf": "TF-IDF words",
            "context": "the mean of its words read in context",
        }[head.familiarity.space]
        parts.append(f"novelty: cosine similarity to the nearest pool item in {space}")
    return "; ".join(parts)


def _rare_none(task: Task, items: list[dict[str, Any]]) -> list[str]:
    """A warning for each label meaning "none of these" that is rare in the pool."""
    warnings = []
    for field, labels in task.labels.items():
        if task.head_fields.get(field) != "label":
            continue
        for label in labels:
            if label.lower() not in NONE_OF_THESE:
                continue
            share = sum(str(i["output"].get(field)) == label for i in items) / len(items)
            if share < RARE:
                warnings.append(
                    f"only {share:.1%} of the pool is {field}={label}, the label for none of the others: the head "
                    f"learns little of what it covers, and an input near a known label is taken for that label "
                    f"(inputs unlike the whole pool still go to review). Add examples of {label}."
                )
    return warnings


def _accepted(profile: Profile, sample: Sample) -> bool:
    confidence = profile.apply(sample.confidence)
    for group in sample.groups:
        rule = profile.thresholds.get(group)
        if rule is None or rule.always_review or rule.threshold is None or confidence < rule.threshold:
            return False
    return True
