"""What the head has never seen goes to review: an input unlike everything in the example pool is not accepted.

A head trained only on what it knows is confidently wrong on what it has never seen, and a calibration measured
on the pool cannot know it. So the head also measures how like the pool an input is: its cosine similarity to
the nearest pool item, in sentence embeddings when an encoder is installed, else in TF-IDF over content words
(on route-ticket's 600-query test pool, held-out banking queries against restaurant and search questions: the
embeddings hold back 99 % of the off-topic ones and 5 % of the banking ones; TF-IDF words 51 % and 1 %). `train`
measures the same similarity out of fold (each pool item against the pool items of the other folds) for the items
the head accepted there, and sets the threshold at their `QUANTILE`: an input less like the pool than that share
of the pool's own accepted items goes to review, and the reason says how far it is. The price, measured in the
README: about that share of accepted answers on inputs like the pool's; the gain: most inputs of a kind the pool
never held.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

QUANTILE = 0.04
CHUNK = 1024  # rows of a similarity block at a time: 1024 x a 10,000-item pool is 40 MB
# "context": a text's words as the compression head's encoder reads them in context, averaged (`in_context`), so
# a text head runs one encoder pass per input, not two
Space = Literal["embeddings", "tfidf", "context"]


LONGER = 3  # an input this many times longer than the pool's longest is unlike it, whatever its words


class Familiarity:
    """The pool as vectors, and the similarity below which an input counts as unlike it; and the pool's longest
    input, beyond LONGER times which an input is unlike it too (a 5,000-character paste into a task whose pool holds
    one-line queries: an encoder reads only its start, and TF-IDF sees its words). (Pickled in the head.)"""

    longest: int | None = None  # the class default: a head pickled before the length rule has none

    def __init__(
        self, space: Space, pool: Any, features: Any, threshold: float, measured_on: int, longest: int | None = None
    ) -> None:
        self.space = space
        self.pool = pool  # unit rows: float16 embeddings, or a sparse TF-IDF matrix
        self.features = features  # the TF-IDF featurizer for the tfidf space; None for embeddings
        self.threshold = threshold
        self.measured_on = measured_on
        self.longest = longest

    def similarity(self, texts: list[str], vectors: np.ndarray | None) -> np.ndarray:
        """Each input's cosine similarity to its nearest pool item."""
        rows = _rows(self.space, self.features, texts, vectors)
        return np.concatenate([block.max(axis=1) for block in _blocks(rows, self.pool)]) if len(texts) else np.zeros(0)

    def unfamiliar(self, texts: list[str], vectors: np.ndarray | None) -> list[str | None]:
        """For each input, why it is unlike the pool, or None when it is like it."""
        reached = f"the {self.threshold:.2f} that {1 - QUANTILE:.0%} of the pool's own accepted items reach"
        why: list[str | None] = [
            None
            if s >= self.threshold
            else f"unlike every example the head learned from (nearest: {s:.2f}, below {reached})"
            for s in self.similarity(texts, vectors)
        ]
        if self.longest:
            for i, text in enumerate(texts):
                if len(text) > LONGER * self.longest:
                    why[i] = (
                        f"far longer than every example the head learned from ({len(text):,} characters; the pool's "
                        f"longest is {self.longest:,})"
                    )
        return why


def in_context(encoded: list[np.ndarray]) -> np.ndarray:
    """Each text's vector in the "context" space: the mean of its words' rows as the encoder read them in the text
    (a word it could not read, past its context, left out), unit length; zeros for a text with no word."""
    out = np.zeros((len(encoded), encoded[0].shape[1] if encoded else 0), dtype=np.float32)
    for n, rows in enumerate(encoded):
        read = rows[np.abs(rows).sum(axis=1) > 0]
        if len(read):
            mean = read.mean(axis=0)
            out[n] = mean / (np.linalg.norm(mean) or 1.0)
    return out


def _rows(space: Space, features: Any, texts: list[str], vectors: np.ndarray | None) -> Any:
    from sklearn.preprocessing import normalize

    if space != "tfidf":
        if vectors is None:
            raise ValueError(f"a familiarity in the {space} space needs the inputs' vectors in it")
        return np.asarray(vectors, dtype=np.float32)
    return normalize(features.transform(texts))


def _blocks(rows: Any, pool: Any) -> Iterator[np.ndarray]:
    """Similarity blocks of CHUNK input rows against every pool item."""
    for start in range(0, rows.shape[0], CHUNK):
        block = rows[start : start + CHUNK] @ pool.T
        yield np.asarray(block.todense() if hasattr(block, "todense") else block, dtype=np.float32)


def fit(
    texts: list[str],
    vectors: np.ndarray | None,
    fold_of: list[int],
    accepted: list[bool],
    space: Space = "embeddings",
) -> tuple[Familiarity, np.ndarray]:
    """The familiarity of a pool, its threshold measured out of fold: each item's similarity to its nearest item
    in the other folds, at QUANTILE of the items the head accepted (of all items when it accepted none). `vectors`
    are the pool's in `space` (no vectors: TF-IDF words). Also returns those out-of-fold similarities, so that
    `train` can say what the rule holds back."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    space = space if vectors is not None else "tfidf"
    # content words only: character n-grams and stop words make any two English sentences look alike (measured on
    # route-ticket's pool: the head's own TF-IDF flagged 23 % of restaurant and search questions, this 51 %)
    words = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True, dtype=np.float32)
    features = words.fit(texts) if space == "tfidf" else None
    rows = _rows(space, features, texts, vectors)
    pool = rows.astype(np.float16) if space != "tfidf" else rows
    folds = np.asarray(fold_of)
    nearest = []
    for start, block in zip(range(0, len(texts), CHUNK), _blocks(rows, rows), strict=True):
        same = folds[start : start + CHUNK, None] == folds[None, :]
        nearest.append(np.where(same, -np.inf, block).max(axis=1))
    own = np.concatenate(nearest) if nearest else np.zeros(0)
    chosen = own[np.asarray(accepted, dtype=bool)] if any(accepted) else own
    threshold = float(np.quantile(chosen, QUANTILE)) if len(chosen) else -1.0
    longest = max((len(t) for t in texts), default=0) or None
    return Familiarity(space, pool, features, threshold, len(chosen), longest), own
