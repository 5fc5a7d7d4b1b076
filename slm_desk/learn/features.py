"""What the label head reads: TF-IDF n-grams of the input, and its sentence embedding beside them when it helps.

With hundreds of labels, TF-IDF knows only the words it has seen; a sentence encoder (all-MiniLM-L6-v2 by
default) knows that "someone took my card" is near "my card was stolen". Both feature sets are fitted and
measured out of fold by `train`, which keeps the more accurate (`head.choose_features`). The embedding block
is the unit-length vector scaled by `EMBEDDING_WEIGHT`: measured on held-out banking77 pool items (route-ticket,
100 to 800 labels), weights 3 to 6 are within a point of each other, and 4 is at or near the top at every size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from slm_desk.learn.retrieval import featurizer

LABEL_C = 30.0  # route-ticket's eval set, head fitted on its whole public pool: 95.7 % at C=30, 95.0 % at C=10
EMBEDDING_WEIGHT = 4.0
Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length rows
FeatureSet = Literal["tfidf", "tfidf+embeddings"]


def design(features: Any, texts: list[str], vectors: np.ndarray | None, weight: float) -> Any:
    """The matrix a label model reads: the TF-IDF rows, with the weighted embeddings beside them."""
    from scipy.sparse import csr_matrix, hstack

    x = features.transform(texts)
    if vectors is None or not weight:
        return x
    return hstack([x, csr_matrix(weight * vectors)], format="csr")


class LabelHead:
    """Per label field, a logistic regression over shared TF-IDF features, and the input's embedding when the
    head was trained with one. (Pickled in stores as it is named; a head pickled before embeddings has none.)"""

    embedding_weight = 0.0  # the class default: heads pickled before embeddings read TF-IDF alone

    def __init__(self, features: Any, models: dict[str, Any], embedding_weight: float = 0.0) -> None:
        self.features = features
        self.models = models
        self.embedding_weight = embedding_weight

    @property
    def reads_embeddings(self) -> bool:
        return bool(self.embedding_weight)

    def predict(
        self, texts: list[str], vectors: np.ndarray | None = None
    ) -> list[tuple[dict[str, str], dict[str, float]]]:
        """For each text: the label per field and its probability."""
        x = design(self.features, texts, vectors if self.reads_embeddings else None, self.embedding_weight)
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

    def margins(self, texts: list[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """For each text, the smallest gap over its label fields between the two likeliest labels: how unsure the
        head is of it (the review queue's teaching order)."""
        x = design(self.features, texts, vectors if self.reads_embeddings else None, self.embedding_weight)
        gaps = np.ones(len(texts))
        for model in self.models.values():
            probs = np.sort(model.predict_proba(x), axis=1)
            gap = probs[:, -1] - probs[:, -2] if probs.shape[1] > 1 else np.ones(len(texts))
            gaps = np.minimum(gaps, gap)
        return gaps


def fit_labels(
    fields: list[str], texts: list[str], outputs: list[dict[str, Any]], vectors: np.ndarray | None
) -> LabelHead:
    """One logistic regression per label field (each with at least two labels), over the chosen features."""
    from sklearn.linear_model import LogisticRegression

    features = featurizer(texts)
    weight = EMBEDDING_WEIGHT if vectors is not None else 0.0
    x = design(features, texts, vectors, weight)
    models = {}
    for field in fields:
        y = [str(output[field]) for output in outputs]
        models[field] = LogisticRegression(C=LABEL_C, max_iter=3000).fit(x, y)
    return LabelHead(features, models, weight)
