"""Words read in context: the bundled encoder's output for each word of a text (`Embedder.in_context`), and the
compression head that measures that reading on its inner folds before it reads it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import numpy as np
import pytest

from slm_desk.contract.tasks import load_task
from slm_desk.data.catalog import EMBEDDING_ID, resolve_model
from slm_desk.data.config import RuntimeConfig
from slm_desk.errors import ModelNotFound
from slm_desk.learn import training
from slm_desk.learn.compress import KeepDrop, tokens
from slm_desk.learn.head import HeadBackend
from slm_desk.learn.wordvectors import Encoder
from slm_desk.models.embedder import Embedder
from tests.test_wordvectors import ANIMALS, CITIES, SEEN, _reports


@pytest.fixture(scope="module")
def encoder() -> Iterator[Embedder]:
    embedder = Embedder(resolve_model(EMBEDDING_ID), RuntimeConfig())
    yield embedder
    embedder.close()


def _words(text: str) -> list[str]:
    return [t[0] for t in tokens(text)]


@pytest.mark.model
def test_each_word_has_the_row_of_its_own_pieces_read_in_its_text(encoder: Embedder) -> None:
    river, loan = encoder.in_context([_words("the bank of the river flooded"), _words("the bank refused my loan")])
    assert river.shape == (6, 384) and loan.shape == (5, 384)
    cosine = river[1] @ loan[1] / np.linalg.norm(river[1]) / np.linalg.norm(loan[1])
    assert 0.3 < cosine < 0.95  # "bank" by a river is not "bank" in a loan, and is still "bank"
    [empty] = encoder.in_context([[]])
    assert empty.shape == (0, 384)


@pytest.mark.model
def test_texts_packed_in_one_batch_read_as_each_alone(encoder: Embedder) -> None:
    texts = [_words(f"report {n}: the datanode lost block {n} after a restart") for n in range(12)]
    together = encoder.in_context(texts)
    alone = [encoder.in_context([t])[0] for t in texts[:3]]
    for a, b in zip(alone, together, strict=False):
        np.testing.assert_allclose(a, b, atol=5e-3)  # f16 weights: the same up to rounding, not another text's


@pytest.mark.model
def test_words_past_the_encoder_s_context_have_zero_rows_not_a_wrapped_guess(encoder: Embedder) -> None:
    [rows] = encoder.in_context([["word"] * 600])
    read = np.abs(rows).sum(axis=1) > 0
    assert read[:510].all() and not read[510:].any()  # 512 tokens: [CLS], 510 words, [SEP]


@pytest.mark.model
def test_the_head_reads_words_in_context_from_the_real_encoder_where_it_measures_them_better(
    encoder: Embedder,
) -> None:
    """The animals-and-cities pool of the static vectors' test, with the encoder run on each report instead."""
    rng = random.Random(0)
    pool = _reports(ANIMALS[:SEEN], CITIES[:SEEN], rng)
    unseen = _reports(ANIMALS[SEEN:], CITIES[SEEN:], rng)
    head = KeepDrop.fit(
        "topic", [x for x, _ in pool], [y for _, y in pool], None, Encoder(EMBEDDING_ID, encoder.in_context)
    )
    assert head.context is not None and head.context.model == EMBEDDING_ID
    answers = head.predict([x for x, _ in unseen], encoder.in_context)
    assert np.mean([a[0]["topic"] == y for a, (_, y) in zip(answers, unseen, strict=True)]) >= 0.9


def _marked(texts: list[list[str]]) -> list[np.ndarray]:
    """A scripted encoder: a word's row says whether it comes last in the alphabet among its text's words (what only
    the text can say), and a little noise. Nothing in the word itself, its shape, its place or its neighbours does."""
    rng = np.random.default_rng(len(texts))
    out = []
    for words in texts:
        rows = rng.normal(0, 0.1, (len(words), 384)).astype(np.float32)
        if words:
            rows[words.index(max(words)), 0] += 3.0
        out.append(rows)
    return out


def _last_in_alphabet(n: int, seed: int) -> list[tuple[str, str]]:
    """Four made-up words, kept: the last in the alphabet."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        words = ["".join(rng.choices("bcdfghjklmnpqrstvwxz", k=6)) for _ in range(4)]
        items.append((" ".join(words), max(words)))
    return items


def test_a_reading_only_the_text_gives_is_measured_better_read_and_asked_for() -> None:
    pool, unseen = _last_in_alphabet(60, 0), _last_in_alphabet(40, 1)
    plain = KeepDrop.fit("topic", [x for x, _ in pool], [y for _, y in pool])
    read = KeepDrop.fit("topic", [x for x, _ in pool], [y for _, y in pool], None, Encoder("scripted", _marked))
    assert plain.context is None and read.context is not None
    right = {
        name: np.mean([a[0]["topic"] == y for a, (_, y) in zip(answers, unseen, strict=True)])
        for name, answers in [
            ("plain", plain.predict([x for x, _ in unseen])),
            ("read", read.predict([x for x, _ in unseen], _marked)),
        ]
    }
    assert right["read"] >= 0.9 and right["plain"] <= 0.5, right
    with pytest.raises(ValueError, match="reads words in context"):
        read.predict([unseen[0][0]])


def test_training_reads_words_in_context_with_the_encoder_and_never_with_tfidf() -> None:
    task = load_task("rewrite-query")
    pool = [{"input": x, "output": {"query": y}} for x, y in _last_in_alphabet(60, 2)]
    source = training.Embedding(
        "scripted",
        vectors=lambda texts: np.ones((len(texts), 8), dtype=np.float32),
        fresh=lambda texts: np.ones((len(texts), 8), dtype=np.float32),
        in_context=_marked,
    )
    trained = training.train(task, pool, embedding=source)
    assert trained.head.reads_in_context == "scripted"
    assert "scripted vector in context" in trained.report.features and trained.report.in_context
    backend = HeadBackend(trained.head, source.vectors)  # loaded where that encoder is not installed
    with pytest.raises(ModelNotFound) as raised:
        backend.complete_many(task, [pool[0]["input"]])
    assert "--features tfidf" in raised.value.hint
    answer = json.loads(
        HeadBackend(trained.head, source.vectors, _marked).complete_many(task, [pool[0]["input"]])[0].text
    )
    assert answer == {"query": pool[0]["output"]["query"]}
    fast = training.train(task, pool, embedding=source, choice="tfidf")
    assert fast.head.reads_in_context is None and not fast.report.in_context  # no encoder run for a tfidf head
