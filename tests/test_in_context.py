"""Words read in context: the bundled encoder's output for each word of a text (`Embedder.in_context`), its first
layers as a model of their own, and the compression head that measures that reading on its inner folds before it
reads it."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from slm_desk import encoders
from slm_desk.contract.tasks import load_task
from slm_desk.data.catalog import EMBEDDING_ID, ModelRef, resolve_model
from slm_desk.data.config import RuntimeConfig
from slm_desk.errors import ModelFileError, ModelNotFound
from slm_desk.learn import novelty, training
from slm_desk.learn.compress import KeepDrop
from slm_desk.learn.head import HeadBackend
from slm_desk.learn.tokenfeatures import tokens
from slm_desk.learn.wordvectors import CONTEXT_LAYERS, Encoder
from slm_desk.models.embedder import Embedder
from slm_desk.models.layers import first_layers
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
def test_the_first_layers_are_a_model_of_their_own_written_once_per_copy_of_the_encoder(
    encoder: Embedder, tmp_path: Path
) -> None:
    import gguf

    source = tmp_path / "encoder.gguf"
    shutil.copy(encoder.model.path, source)
    folder = tmp_path / "derived"
    path = first_layers(source, 2, folder)
    reader = gguf.GGUFReader(path)
    assert reader.fields["bert.block_count"].contents() == 2
    assert {int(t.name.split(".")[1]) for t in reader.tensors if t.name.startswith("blk.")} == {0, 1}
    written = path.stat().st_mtime_ns
    assert first_layers(source, 2, folder) == path and path.stat().st_mtime_ns == written  # not written again
    two = Embedder(ModelRef("first 2", path), RuntimeConfig())
    words = _words("the bank of the river flooded")
    [shallow], [deep] = two.in_context([words]), encoder.in_context([words])
    two.close()
    assert shallow.shape == deep.shape and not np.allclose(shallow, deep, atol=0.1)  # another reading of each word
    os.utime(source, ns=(written, written + 1))  # the encoder replaced: its layers are written again, once
    again = first_layers(source, 2, folder)
    assert again != path and again.is_file() and list(folder.iterdir()) == [again]
    with pytest.raises(ModelFileError, match="no 7 layers"):
        first_layers(source, 7, folder)
    assert list(folder.iterdir()) == [again]  # nothing half-written left behind


@pytest.mark.model
def test_a_head_reads_the_layers_it_was_trained_on(slm_home: Path) -> None:
    """The desk's encoder reads the first layers (written under the models folder when first read); a head pickled
    before that read all of them, and still does."""
    from slm_desk import locations
    from slm_desk.desk import Desk

    desk = Desk()
    source, _ = desk.embedding()
    assert source is not None and source.in_context is not None and source.in_context.layers == CONTEXT_LAYERS
    words = [_words("the bank of the river flooded")]
    [shallow] = source.in_context.in_context(words)
    assert [p.name.split(".")[2] for p in (locations.models_dir() / "derived").iterdir()] == [f"first{CONTEXT_LAYERS}"]
    reader = encoders.reader_for(desk.config, desk.store)
    every = reader(source.model, None)
    assert every is not None
    [deep] = every(words)
    assert not np.allclose(shallow, deep, atol=0.1)
    assert reader("not-installed", 2) is None


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


def _reversed(texts: list[list[str]]) -> list[np.ndarray]:
    """The scripted encoder's rows turned around: every text reads unlike the pool's."""
    return [-rows for rows in _marked(texts)]


def test_a_text_s_vector_in_context_is_its_read_words_mean_at_unit_length() -> None:
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [3.0, 4.0]], dtype=np.float32)  # the middle word was never read
    vectors = novelty.in_context([rows, np.zeros((0, 2), dtype=np.float32)])
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])


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


def _no_embeddings(texts: list[str]) -> np.ndarray:
    raise AssertionError("a text head that reads words in context runs no second encoder pass")


def test_training_reads_words_in_context_with_the_encoder_and_never_with_tfidf() -> None:
    task = load_task("rewrite-query")
    pool = [{"input": x, "output": {"query": y}} for x, y in _last_in_alphabet(60, 2)]
    source = training.Embedding("scripted", _no_embeddings, _no_embeddings, in_context=Encoder("scripted", _marked, 2))
    trained = training.train(task, pool, embedding=source)
    context = trained.head.reads_in_context
    assert context is not None and (context.model, context.layers) == ("scripted", 2)  # what loading it asks for
    assert "vector in context from scripted's first 2 layers" in trained.report.features and trained.report.in_context
    # its novelty rule reads the same pass: the mean of the words read in context, no sentence embeddings
    assert trained.head.familiarity is not None and trained.head.familiarity.space == "context"
    assert trained.head.embedding is None and trained.report.novelty_space == "context"
    backend = HeadBackend(trained.head, source.vectors)  # loaded where that encoder is not installed
    with pytest.raises(ModelNotFound) as raised:
        backend.complete_many(task, [pool[0]["input"]])
    assert "--features tfidf" in raised.value.hint
    answer = json.loads(
        HeadBackend(trained.head, source.vectors, _marked).complete_many(task, [pool[0]["input"]])[0].text
    )
    assert answer == {"query": pool[0]["output"]["query"]}
    unlike = HeadBackend(trained.head, None, _reversed).complete_many(task, [pool[0]["input"]])[0]
    assert unlike.unfamiliar is not None and "unlike every example" in unlike.unfamiliar
    fast = training.train(task, pool, embedding=source, choice="tfidf")
    assert fast.head.reads_in_context is None and not fast.report.in_context  # no encoder run for a tfidf head
