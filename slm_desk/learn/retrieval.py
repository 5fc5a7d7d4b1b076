"""Similar labelled examples for an input: TF-IDF over word and character n-grams, cosine nearest neighbours.

A 135M model cannot learn a task from its instructions, but it copies well from examples that look like the
input. For each input the k most similar pool items become its few-shot turns (the most similar last, nearest
the input). The index is built once per pool and kept; a query is one sparse vector and one sparse product.
Where the task's head reads sentence embeddings, the index is those embeddings instead (a query is one
embedding and one dense product): "someone took my card" finds "my card was stolen", which shares no word.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import spmatrix

# Word unigrams and bigrams catch the topic; character 2-5-grams inside word boundaries catch spelling variants
# ("top-up", "topup", "topped up") that short support messages are full of.
FEATURES: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True},
}


def featurizer(texts: list[str]) -> Any:
    """A fitted TF-IDF feature union (the same features the head's label models are trained on)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    min_df = 2 if len(texts) >= 50 else 1  # a feature seen once in a large pool is noise
    parts = [
        (name, TfidfVectorizer(lowercase=True, dtype=np.float32, min_df=min_df if name == "char" else 1, **options))
        for name, options in FEATURES.items()
    ]
    return FeatureUnion(parts).fit(texts)


class Retriever:
    """The k nearest pool items of an input, as (input, output JSON) few-shot pairs. Deterministic. With `vectors`
    (the pool's unit-length embeddings, in order) and `embed`, nearness is the embeddings' cosine."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        k: int,
        vectors: np.ndarray | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        from sklearn.preprocessing import normalize

        self.items = items
        self.k = k
        texts = [item["input"] for item in items]
        self.embed = embed if vectors is not None else None
        self.vectors = vectors
        if self.embed is None:
            self.features = featurizer(texts)
            self.matrix: spmatrix = normalize(self.features.transform(texts)).T.tocsr()  # features x items
        self._lock = threading.Lock()  # sklearn's transform is not documented as thread-safe

    def nearest(self, text: str, k: int | None = None) -> list[int]:
        from sklearn.preprocessing import normalize

        k = self.k if k is None else k
        if self.embed is not None and self.vectors is not None:
            scores = self.vectors @ self.embed([text])[0]
        else:
            with self._lock:
                query = normalize(self.features.transform([text]))
            scores = np.asarray((query @ self.matrix).todense()).ravel()
        k = min(k, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        return sorted(top.tolist(), key=lambda i: (-scores[i], i))  # ties broken by pool order: deterministic

    def shots(self, text: str) -> list[tuple[str, str]] | None:
        """Few-shot turns for `text`, least similar first, so the closest example sits right before the input."""
        chosen = [i for i in self.nearest(text) if self.items[i]["input"] != text]
        if not chosen:
            return None
        return [
            (self.items[i]["input"], json.dumps(self.items[i]["output"], ensure_ascii=False)) for i in reversed(chosen)
        ]
