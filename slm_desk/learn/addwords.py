"""The words a short text adds to what it copies: a bug title's "fix", "support", "upgrade" or "S3A", which its report
may never spell.

A third of a Hadoop bug title's words are not in its report, and most of those are a few hundred words titles use
again and again. For each of the pool's most common answer words (at most `WORDS`, each in at least `MIN_ANSWERS`
answers, none with a digit: a number the input does not hold is never written), a logistic regression on the input's
TF-IDF words and word pairs says how likely the answer is to hold it. The compression head (`learn/compress.py`) uses
them twice:
- it reads each input token's probability among its features (models blind to the pair, out of fold, in training):
  what the whole report says about a word, beside what the word's own place says;
- it adds the words at or above a threshold that its kept words lack, where its inner folds measure that better, and
  only then.
Measured on title-bug-report's 300 held-out reports with the tagger on its sparse features alone: token F1 0.342, the
words added 0.368, read and added 0.375. On TREC keyword queries, 0.533 -> 0.540 -> 0.541.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Any, TypeVar

import numpy as np

from slm_desk.contract.words import token_f1, words
from slm_desk.learn.retrieval import FEATURES

WORDS = 300  # answer words with a model each: 300 and 600 scored alike on bug titles (0.367)
MIN_ANSWERS = 3  # a word fewer answers hold has too little to learn from
C = 10.0  # measured on held-out bug titles: 1 0.357, 4 0.367, 10 0.370, 30 0.370
MAX_FEATURES = 50_000
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # the probabilities `choose` tries, beside adding nothing
# a weight nearer 0 than this is dropped: on bug titles the same token F1 with 7 % of the weights (2.8 MB, not 38)
PRUNE = 0.2
Rule = TypeVar("Rule", bound=Hashable)


class AddedWords:
    """One logistic regression per common answer word, kept as one weight matrix. (Pickled in the head.)"""

    def __init__(self, vocabulary: list[str], place: list[float], vectorizer: Any, weights: Any, bias: np.ndarray):
        self.vocabulary = vocabulary
        self.place = place  # where answers say each word, 0 first to 1 last: "Fix ..." and "S3A: ..." near 0
        self.vectorizer = vectorizer
        self.weights = weights
        self.bias = bias
        self.index = {word: n for n, word in enumerate(vocabulary)}

    @classmethod
    def fit(cls, texts: list[str], targets: list[str]) -> AddedWords | None:
        """The models of the targets' common words; None when no word is common enough."""
        from scipy.sparse import csr_matrix
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        said = [words(target) for target in targets]
        counts = Counter(w for answer in said for w in set(answer))
        common = [w for w, n in counts.most_common() if n >= MIN_ANSWERS and not any(c.isdigit() for c in w)][:WORDS]
        holds = [set(answer) for answer in said]
        common = [w for w in common if len({w in h for h in holds}) == 2]  # some answers hold it and some do not
        if not common:
            return None
        vectorizer = TfidfVectorizer(**FEATURES["word"], min_df=2, max_features=MAX_FEATURES)
        try:
            x = vectorizer.fit_transform(texts)
        except ValueError:  # no word in two inputs
            return None
        weights, bias = [], []
        for word in common:
            # liblinear, like the tagger: 300 words' models on 1,600 reports in about 4 s
            model = LogisticRegression(C=C, solver="liblinear").fit(x, [word in h for h in holds])
            weights.append(model.coef_[0])
            bias.append(model.intercept_[0])
        place = [float(np.mean([a.index(w) / len(a) for a in said if w in a])) for w in common]
        kept = np.vstack(weights).T.astype(np.float32)
        kept[np.abs(kept) < PRUNE] = 0
        return cls(common, place, vectorizer, csr_matrix(kept), np.asarray(bias))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Each text's probability of holding each word, one row per text."""
        z = np.asarray((self.vectorizer.transform(texts) @ self.weights).todense()) + self.bias
        return np.asarray(1 / (1 + np.exp(-z)))

    def of_tokens(self, toks: list[str], probabilities: np.ndarray) -> np.ndarray:
        """Two columns a token: the probability that the answer holds its word, and 1, for a word with a model;
        zeros for any other (what the keep/drop tagger reads of the whole input)."""
        out = np.zeros((len(toks), 2), dtype=np.float32)
        for k, token in enumerate(toks):
            n = self.index.get(token.lower())
            if n is not None:
                out[k] = probabilities[n], 1.0
        return out

    def added(self, answer: str, probabilities: np.ndarray, threshold: float) -> str:
        """The answer with the words at or above `threshold` it does not hold, where answers say them: those said in
        their first half before it ("Fix", "S3A:"), the rest after it."""
        have = set(words(answer))
        new = sorted(
            (self.place[n], self.vocabulary[n])
            for n in np.flatnonzero(probabilities >= threshold)
            if self.vocabulary[n] not in have
        )
        before = [word for place, word in new if place < 0.5]
        after = [word for place, word in new if place >= 0.5]
        return " ".join([*before, answer, *after]) if new else answer


Told = tuple[AddedWords, np.ndarray]  # word models, and one text's probabilities from them


def out_of_fold(texts: list[str], targets: list[str], folds: int) -> dict[int, Told]:
    """Each pair's word probabilities, from models fitted on the other folds (pair i in fold i % folds), by pair;
    a pair whose fold's pool had no common word has none."""
    told: dict[int, Told] = {}
    for fold in range(folds if len(texts) >= 2 * folds else 0):
        others = [i for i in range(len(texts)) if i % folds != fold]
        adds = AddedWords.fit([texts[i] for i in others], [targets[i] for i in others])
        held = range(fold, len(texts), folds)
        if adds is not None:
            for i, row in zip(held, adds.probabilities([texts[i] for i in held]), strict=True):
                told[i] = adds, row
    return told


def choose(
    targets: list[str], answers: dict[Rule, dict[int, str]], adding: dict[int, Told]
) -> tuple[Rule, float | None]:
    """A tagger's keep rule and the probability from which it adds common answer words (None: it adds none), chosen
    together from each rule's out-of-fold `answers` (by pair) and `out_of_fold`'s word models of each pair. Chosen
    together because adding words asks less of the kept ones: on bug titles the best rule alone kept the tokens at
    0.3 of the likeliest's probability, and 0.4 with words added (0.370 -> 0.373). The first of equals, in the
    rules' order, adding nothing before adding."""
    best: tuple[Rule, float | None] | None = None
    score = -1.0
    for rule, given in answers.items():
        for threshold in (None, *(THRESHOLDS if adding else ())):
            judged = 0.0
            for i, answer in given.items():
                if threshold is not None and i in adding:
                    adds, row = adding[i]
                    answer = adds.added(answer, row, threshold)
                judged += token_f1(answer, targets[i])
            if judged > score:
                best, score = (rule, threshold), judged
    if best is None:
        raise ValueError("no rule to choose from")
    return best
