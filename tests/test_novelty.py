"""The novelty rule: an input unlike everything in the pool is never accepted. Its laws, stated with hypothesis,
and the rule on a real pool (tests/data, banking77)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from slm_desk.contract.decision import decide
from slm_desk.contract.tasks import load_task
from slm_desk.data.evalset import builtin, read_jsonl
from slm_desk.learn import novelty, training
from slm_desk.learn.novelty import Familiarity
from tests.test_decision import profile

ROUTE = load_task("route-ticket")
ROUTE_POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"
confidences = st.one_of(st.none(), st.floats(0.0, 1.0))
thresholds = st.one_of(st.just(0.0), st.just(-1.0), st.just(1.0), st.floats(-1.0, 1.0))


def unit_rows(seed: int, n: int, d: int = 8) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@given(st.integers(0, 2**16), st.integers(1, 30), st.integers(1, 12), thresholds)
def test_an_input_is_unfamiliar_exactly_when_its_nearest_similarity_is_below_the_threshold(
    seed: int, pool_size: int, inputs: int, threshold: float
) -> None:
    pool, queries = unit_rows(seed, pool_size), unit_rows(seed + 1, inputs)
    rule = Familiarity("embeddings", pool.astype(np.float16), None, threshold, pool_size)
    nearest = rule.similarity([""] * inputs, queries)
    assert np.allclose(nearest, (queries @ pool.astype(np.float16).astype(np.float32).T).max(axis=1), atol=1e-3)
    for s, why in zip(nearest, rule.unfamiliar([""] * inputs, queries), strict=True):
        assert (why is None) == (s >= threshold)  # a threshold of 0.0 (or below) is a threshold, never "missing"
        if why is not None:
            assert f"{threshold:.2f}" in why


@given(st.integers(0, 2**16), st.integers(2, 30))
def test_an_input_that_is_in_the_pool_is_never_unfamiliar(seed: int, pool_size: int) -> None:
    pool = unit_rows(seed, pool_size)
    rule = Familiarity("embeddings", pool.astype(np.float16), None, 0.999, pool_size)
    assert rule.unfamiliar([""] * pool_size, pool) == [None] * pool_size


@given(
    st.sampled_from(sorted(ROUTE.labels["route"])),
    confidences,
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.booleans(),
)
def test_an_unfamiliar_input_is_never_accepted(
    label: str, confidence: float | None, threshold: float | None, accept_at: float | None, can_escalate: bool
) -> None:
    output = {"route": label}
    calibrated = profile({f"route={label}": threshold})
    verdict = decide(ROUTE, output, [], confidence, calibrated, accept_at, can_escalate, unfamiliar="far (0.10)")
    assert verdict.decision == "review"
    familiar = decide(ROUTE, output, [], confidence, calibrated, accept_at, can_escalate, unfamiliar=None)
    plain = decide(ROUTE, output, [], confidence, calibrated, accept_at, can_escalate)
    assert familiar == plain  # the rule changes nothing for an input like the pool
    if not ROUTE.always_reviewed(output):
        assert verdict.reason == "the input is far (0.10)"


@given(st.integers(0, 2**16), st.integers(10, 80), st.integers(2, 5), st.floats(0.0, 1.0))
def test_the_threshold_holds_back_at_most_its_quantile_of_the_accepted_items_out_of_fold(
    seed: int, n: int, folds: int, share_accepted: float
) -> None:
    rows = unit_rows(seed, n, d=4)
    rng = np.random.default_rng(seed)
    accepted = [bool(a) for a in rng.random(n) < share_accepted]
    fold_of = [i % folds for i in range(n)]
    rule, own = novelty.fit([""] * n, rows, fold_of, accepted)
    assert len(own) == n and rule.space == "embeddings"
    judged = own[np.asarray(accepted)] if any(accepted) else own
    assume(len(judged) > 0)
    below = float((judged < rule.threshold).mean())
    assert below <= novelty.QUANTILE + 1 / len(judged)
    for i in range(n):  # each item's own similarity is to its nearest item of another fold, never to itself
        others = [j for j in range(n) if fold_of[j] != fold_of[i]]
        assert np.isclose(own[i], (rows[others] @ rows[i]).max(), atol=1e-5)


def test_without_an_encoder_the_rule_reads_content_words() -> None:
    """route-ticket's TF-IDF head on 600 banking77 queries, no encoder: held-out banking queries (the built-in eval
    set) are like the pool; about half the restaurant bookings and conversational search questions are not (the
    encoder's rule, tested with the model in test_embeddings, holds back nearly all of them)."""
    trained = training.train(ROUTE, read_jsonl(ROUTE_POOL))
    assert trained.report.novelty_threshold is not None and trained.report.novelty_held_back is not None
    assert trained.head.familiarity is not None and trained.head.familiarity.space == "tfidf"  # no encoder here
    assert trained.report.novelty_held_back <= novelty.QUANTILE + 0.02
    banking = [g["input"] for g in read_jsonl(builtin("route-ticket"))]  # type: ignore[arg-type]
    elsewhere = [g["input"] for g in read_jsonl(builtin("extract-booking"))][:100]  # type: ignore[arg-type]
    elsewhere += [g["input"].splitlines()[-1] for g in read_jsonl(builtin("rewrite-followup"))][:100]  # type: ignore[arg-type]
    far = trained.head.unfamiliar(elsewhere)
    near = trained.head.unfamiliar(banking)
    assert sum(w is not None for w in far) / len(far) >= 0.4
    assert sum(w is not None for w in near) / len(near) <= 0.05


@given(st.integers(1, 400), st.integers(0, 5000), st.floats(-1.0, 1.0))
def test_an_input_far_longer_than_the_pool_s_longest_is_unfamiliar_whatever_its_words(
    longest: int, length: int, threshold: float
) -> None:
    """A 5,000-character paste into route-ticket was accepted at 0.83: length is part of being like the pool."""
    pool = unit_rows(0, 4)
    rule = Familiarity("embeddings", pool.astype(np.float16), None, threshold, 4, longest)
    [why] = rule.unfamiliar(["x" * length], pool[:1])  # its words as like the pool as can be
    if length > novelty.LONGER * longest:
        assert why is not None and "far longer than every example" in why and f"{longest:,}" in why
    else:
        assert why is None or "far longer" not in why


def test_a_head_trained_on_short_queries_sends_a_long_paste_to_review(tmp_path: Path) -> None:
    from slm_desk.desk import Desk
    from tests.conftest import first_items

    desk = Desk()
    desk.add_examples(ROUTE, first_items(ROUTE_POOL, 200, tmp_path / "pool.jsonl"))
    desk.train(ROUTE, features="tfidf")
    pipeline, _ = desk.head(ROUTE)  # type: ignore[misc]
    pasted = "I lost my card and need a new one, please block the old card. " * 80
    [result] = pipeline.answer_batch([pasted])
    assert result.decision == "review" and result.unfamiliar and "far longer" in result.unfamiliar  # type: ignore[union-attr]
