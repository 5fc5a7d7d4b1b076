"""The compression head: free text written in the input's own words, each input word kept or dropped.

Most of what a keyword query or a one-line title says is copied: 77 % of a TREC title's words are in its description,
65 % of a Hadoop bug title's in its report. For a field the task declares `compress`, each input word whose lower-cased,
lightly stemmed form the pool's answer holds is marked kept, and a per-token logistic regression learns keep or drop
from the word, its shape, whether it is a function word, how rare it is across the pool's inputs, where it sits
(position, sentence), how often it repeats, its neighbours, how often the pool kept that word (out of fold, so training
never reads its own answer), and, where the inner folds measure them better, its static vector from the encoder's token
table and its vector as the encoder reads it in this input (`learn/wordvectors.py`). The answer is the kept tokens in
input order, cut from the input itself: verbatim words by construction. The keep rule (a probability, or a share of the
likeliest token's) is chosen out of fold for token F1. A linear-chain CRF over the same features was measured no better
on held-out TREC topics (0.48-0.49 against 0.50-0.52, two seeds) and several times slower on long reports.

It also reads, for each token, how likely a model of the whole input says the answer is to hold its word (one per
common answer word, `learn/addwords.py`); where the inner folds measure it better, and only there, the answer also
says those words its input lacks ("Fix", "S3A", "support"), never a number.

Confidence is how sure the tagger is of its answer: the mean keep-probability of the kept tokens times the
drop-probability of the likeliest token it dropped. `train` calibrates it out of fold on the task's text bar (token
F1 >= `text_match` counts as right), like any confidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from slm_desk.contract.words import FUNCTION_WORDS, token_f1
from slm_desk.learn import addwords
from slm_desk.learn.addwords import AddedWords, Told
from slm_desk.learn.tokenfeatures import (
    NEAR,
    PAD,
    WHERE,
    Memo,
    Part,
    Token,
    Vocabulary,
    features,
    keep_tags,
    stem,
    token_rows,
    tokens,
)
from slm_desk.learn.wordvectors import DIMS, Context, Encoder, InContext, WordVectors

_Vocabulary = Vocabulary  # the name a head pickled before tokenfeatures.py has its vocabulary under

INNER_FOLDS = 3
# the keep rules tried out of fold: a token kept at or above a probability, or at or above a share of the likeliest
# token's (a long report's words are all less likely than a short topic's: measured 0.509 -> 0.530 on held-out TREC)
THRESHOLDS = (0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
SHARES = (0.3, 0.4, 0.5, 0.6)
RULES = [(t, False) for t in THRESHOLDS] + [(s, True) for s in SHARES]
C = 0.3  # measured on held-out TREC topics: 0.3 at or near the top of 0.1-3

WORDS_KEPT = 20_000  # words whose features (about 2 KB each) and scores a tagger keeps between batches
CONTEXT_AXES_FROM = 300  # texts whose words set the axes the encoder's rows are projected on
Reading = tuple[WordVectors | None, Encoder | None]  # what a tagger reads beside its sparse features


def render(toks: list[Token], kept: list[bool]) -> str:
    """The kept tokens in input order; tokens glued in the input ("HDFS-1234", "FSNamesystem.java") stay glued, and
    a word the answer already holds is not said again ("rail strike rail strike": measured 0.314 -> 0.335 token F1
    on held-out bug titles)."""
    words: list[str] = []
    previous = -2
    for i, (word, start, _) in enumerate(toks):
        if not kept[i]:
            continue
        if previous == i - 1 and toks[previous][2] == start:
            words[-1] += word
        else:
            words.append(word)
        previous = i
    first: dict[str, str] = {}  # each stem's first spelling, in input order
    for word in words:
        first.setdefault(stem(word), word)
    return " ".join(first.values())


class KeepDrop:
    """One keep/drop tagger per compressed field. (Pickled in the head.)"""

    share = False  # the threshold is a share of the likeliest token's probability (a head pickled before: never)
    words: WordVectors | None = None  # each word's vector among the features (a head pickled before: none)
    context: Context | None = None  # each word's vector in its text among the features (the same)
    adds: AddedWords | None = None  # its models of common answer words, read and, where measured, added (the same)
    add_at: float | None = None  # the probability at or above which it adds one; None: it adds none
    reads_told: bool = False  # whether it reads its word models' probabilities of each token's word (the same)

    def __init__(
        self,
        field: str,
        vectorizer: Any,
        model: Any,
        vocabulary: Vocabulary,
        threshold: float,
        share: bool = False,
        words: WordVectors | None = None,
        context: Context | None = None,
        adds: AddedWords | None = None,
        add_at: float | None = None,
        reads_told: bool = False,
    ) -> None:
        self.field = field
        self.vectorizer = vectorizer
        self.model = model
        self.vocabulary = vocabulary
        self.threshold = threshold
        self.share = share
        self.words = words
        self.context = context
        self.adds = adds
        self.add_at = add_at if adds is not None else None
        self.reads_told = reads_told

    @classmethod
    def fit(
        cls,
        field: str,
        texts: list[str],
        targets: list[str],
        words: WordVectors | None = None,
        encoder: Encoder | None = None,
    ) -> KeepDrop:
        """The tagger on every pair, its keep rule, and what it reads beside its sparse features, chosen on inner
        folds (each fold tagged by a tagger that never saw it, its word priors from the other folds too): nothing,
        the static `words`, or those and each word as the `encoder` reads it in its text; then whether it adds
        common answer words the input may lack (`learn/addwords.py`), and from what probability."""
        readings: list[Reading] = [(None, None)]
        readings += [(words, None)] * (words is not None) + [(words, encoder)] * (encoder is not None)
        encoded = encode_words(texts, encoder.in_context) if encoder is not None else None
        told = addwords.out_of_fold(texts, targets, INNER_FOLDS)  # what the answer holds, by models blind to it
        judged: dict[tuple[float, bool, int], float] = {}
        tagged: list[list[tuple[int, list[Token], np.ndarray]]] = []  # each reading's pairs, tokens and probabilities
        if len(texts) >= 2 * INNER_FOLDS:
            for n, (static, reads) in enumerate(readings):
                fold_probs: list[tuple[int, list[Token], np.ndarray]] = []
                for fold in range(INNER_FOLDS):
                    kept = [i for i in range(len(texts)) if i % INNER_FOLDS != fold]
                    rows = [encoded[i] for i in kept] if reads is not None and encoded is not None else None
                    pairs = [texts[i] for i in kept], [targets[i] for i in kept]
                    inner = cls._fitted(
                        field, *pairs, 0.3, False, static, reads, rows, told=_by(told, kept) if told else None
                    )
                    held = range(fold, len(texts), INNER_FOLDS)
                    toks = [tokens(texts[i]) for i in held]
                    own = [encoded[i] for i in held] if inner.context is not None and encoded is not None else None
                    probs = inner.keep_probabilities(toks, own, _by(told, held) if inner.reads_told else None)
                    fold_probs += zip(held, toks, probs, strict=True)
                tagged.append(fold_probs)
                for rule in RULES:
                    judged[(*rule, n)] = sum(token_f1(render(t, _kept(p, *rule)), targets[i]) for i, t, p in fold_probs)
        # the first of equals: the least read, the lowest absolute threshold (with no folds to judge by, those)
        threshold, share, n = max(judged, key=lambda r: judged[r]) if judged else (THRESHOLDS[0], False, 0)
        static, reads = readings[n]
        add_at = None
        if tagged:
            answers = {rule: {i: render(t, _kept(p, *rule)) for i, t, p in tagged[n]} for rule in RULES}
            (threshold, share), add_at = addwords.choose(targets, answers, told)
        rows = encoded if reads is not None else None
        every, adds = (_by(told, range(len(texts))), AddedWords.fit(texts, targets)) if told else (None, None)
        return cls._fitted(field, texts, targets, threshold, share, static, reads, rows, add_at, every, adds)

    def refitted(self, texts: list[str], targets: list[str], encoder: Encoder | None = None) -> KeepDrop:
        """A tagger that reads what this one reads, with its keep rule, fitted on other pairs: a training fold's (what
        to read and the rule are chosen once per training, on the whole pool: choosing them again in each of the 5
        folds took title-bug-report's training from 29 to 47 min of CPU)."""
        reads = encoder if self.context is not None else None
        encoded = encode_words(texts, reads.in_context) if reads is not None else None
        rule = self.threshold, self.share
        blind = addwords.out_of_fold(texts, targets, INNER_FOLDS) if self.reads_told else {}
        told = _by(blind, range(len(texts))) if blind else None
        adds = AddedWords.fit(texts, targets) if self.adds is not None else None
        return self._fitted(self.field, texts, targets, *rule, self.words, reads, encoded, self.add_at, told, adds)

    @classmethod
    def _fitted(
        cls,
        field: str,
        texts: list[str],
        targets: list[str],
        threshold: float,
        share: bool = False,
        words: WordVectors | None = None,
        encoder: Encoder | None = None,
        encoded: list[np.ndarray] | None = None,
        add_at: float | None = None,
        told: list[Told | None] | None = None,
        adds: AddedWords | None = None,
    ) -> KeepDrop:
        """One tagger; with an `encoder`, `encoded` holds its rows of each text's words; with `told`, each text's
        word probabilities from models blind to its answer, which it reads, and `adds` its own word models, which
        tell it at answer time (a tagger that only tags an inner fold is told by the caller); with `add_at`, it adds
        those words from that probability."""
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        context = None
        if encoder is not None and encoded is not None:
            context = Context.fit(encoder, encoded[:CONTEXT_AXES_FROM])
        rarity = Vocabulary(texts, targets)
        reads = told is not None
        rows: list[dict[str, Any]] = []
        meanings: list[np.ndarray] = []
        labels: list[bool] = []
        for fold in range(INNER_FOLDS):  # each row's word priors come from the pairs of the other folds
            others = [i for i in range(len(texts)) if i % INNER_FOLDS != fold] or list(range(len(texts)))
            prior = Vocabulary([texts[i] for i in others], [targets[i] for i in others])
            memo: Memo = {}
            for i in range(fold, len(texts), INNER_FOLDS):
                toks = tokens(texts[i])
                rows += token_rows(features(toks, rarity, prior, memo), memo)
                own = encoded[i] if context is not None and encoded is not None else None
                said = _said(toks, told[i]) if told is not None else None
                meanings.append(_meanings(toks, words, context, own, said))
                labels += keep_tags(toks, targets[i])
        vectorizer = DictVectorizer()
        x = _design(vectorizer.fit_transform(rows), np.vstack(meanings))
        if len(set(labels)) < 2:  # nothing kept, or everything: a constant answer
            labels[0] = not labels[0]
        # liblinear: coordinate descent suits a design this wide (every word and its neighbours is a column); on the
        # TREC pool it fitted 6x faster than L-BFGS with the same held-out token F1
        model = LogisticRegression(C=C, solver="liblinear").fit(x, labels)
        return cls(field, vectorizer, model, rarity, threshold, share, words, context, adds, add_at, reads)

    def keep_probabilities(
        self, texts: list[list[Token]], encoded: list[np.ndarray] | None = None, told: list[Told | None] | None = None
    ) -> list[np.ndarray]:
        """Each token's probability of being kept, for each text's tokens; `encoded` holds the encoder's rows of
        each, for a tagger that reads words in context, and `told` its word probabilities, for one that reads
        those. What the model computes, sigmoid(w . x + b), without building x: a token's score is its word's own
        part's, its neighbours' parts', where it stands and its vectors'. Each word's parts are scored once (and
        kept, for the next batch: `WORDS_KEPT`), and the rest is arrays over every token of every text (3,000 TREC
        descriptions: 0.71 -> 0.27 s, the same probabilities as `predict_proba` on DictVectorizer's design)."""
        if not any(texts):
            return [np.zeros(0) for _ in texts]
        memo: Memo = self.__dict__.setdefault("_memo", {})  # never pickled (`__getstate__`)
        scored: dict[str, tuple[float, ...]] = self.__dict__.setdefault("_scored", {})
        if len(memo) > WORDS_KEPT:
            memo.clear()
            scored.clear()
        read = [features(toks, self.vocabulary, self.vocabulary, memo) for toks in texts]
        weights = self.model.coef_[0]
        vocabulary = self.vectorizer.vocabulary_
        sparse, dense = weights[: len(vocabulary)], weights[len(vocabulary) :]

        def score(part: Part) -> float:
            total = 0.0
            for name, value in part.items():
                column = vocabulary.get(f"{name}{self.vectorizer.separator}{value}" if isinstance(value, str) else name)
                if column is not None:
                    total += sparse[column] * (1.0 if isinstance(value, str) else value)
            return total

        words = [word for text in read for word in text.words]
        for word in set(words) - scored.keys():
            own, near = memo[word]
            scored[word] = (score(own), *(score(near[d]) for d in NEAR))
        table = np.asarray([scored[word] for word in words], dtype=np.float64).reshape(len(words), 1 + len(NEAR))
        where = np.asarray([w for text in read for w in text.where], dtype=np.float64).reshape(len(words), len(WHERE))
        located = [vocabulary.get(name) for name in WHERE]
        z = table[:, 0] + where @ np.asarray([sparse[c] if c is not None else 0.0 for c in located])
        z += self.model.intercept_[0]
        owner = np.repeat(np.arange(len(texts)), [len(toks) for toks in texts])
        at = np.arange(len(words))
        for k, d in enumerate(NEAR, start=1):  # a neighbour's part if it is in the same text, else the pad's
            there = np.clip(at + d, 0, max(len(words) - 1, 0))
            inside = (at + d >= 0) & (at + d < len(words)) & (owner[there] == owner)
            z += np.where(inside, table[there, k], score(PAD[d]))
        if dense.size:  # text by text: one text's rows stay in the cache (all at once measured 2x slower)
            meanings = [
                _meanings(
                    toks,
                    self.words,
                    self.context,
                    encoded[n] if encoded is not None else None,
                    _said(toks, told[n] if told is not None else None) if self.reads_told else None,
                )
                for n, toks in enumerate(texts)
            ]
            z += np.vstack(meanings) @ dense
        probs = 1 / (1 + np.exp(-z))
        if list(self.model.classes_).index(True) == 0:  # sigmoid(z) is the second class's probability
            probs = 1 - probs
        return np.split(probs, np.cumsum([len(toks) for toks in texts])[:-1])

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in {"_memo", "_scored"}}  # not the words it read

    def predict(
        self, texts: list[str], in_context: InContext | None = None, encoded: list[np.ndarray] | None = None
    ) -> list[tuple[dict[str, str | None], dict[str, float]]]:
        """For each text: the field's value (null when the input has no word) and the tagger's sureness. A tagger
        that reads words in context needs the encoder (`in_context`, `Embedder.in_context`) or what it read
        (`encoded`, `encode_words`)."""
        if self.context is None:
            encoded = None
        elif encoded is None:
            if in_context is None:
                raise ValueError(f"the {self.field} tagger reads words in context and was given no encoder")
            encoded = encode_words(texts, in_context)
        every = [tokens(text) for text in texts]
        adding = self.adds.probabilities(texts) if self.adds is not None else None
        told: list[Told | None] | None = None
        if adding is not None and self.adds is not None:
            told = [(self.adds, row) for row in adding]
        answers: list[tuple[dict[str, str | None], dict[str, float]]] = []
        for n, (toks, probs) in enumerate(zip(every, self.keep_probabilities(every, encoded, told), strict=True)):
            if not len(probs) or not any(t[0][0].isalnum() for t in toks):
                answers.append(({self.field: None}, {self.field: 0.0}))
                continue
            kept = _kept(probs, self.threshold, self.share)
            dropped = [p for p, k in zip(probs, kept, strict=True) if not k]
            sure = float(np.mean([p for p, k in zip(probs, kept, strict=True) if k])) * (1 - max(dropped, default=0))
            answer = render(toks, kept)
            if self.adds is not None and self.add_at is not None and adding is not None:
                answer = self.adds.added(answer, adding[n], self.add_at)
            answers.append(({self.field: answer}, {self.field: sure}))
        return answers


def _by(told: dict[int, Told], pairs: Iterable[int]) -> list[Told | None]:
    """`out_of_fold`'s word probabilities of these pairs, in order; None for a pair it has none of."""
    return [told.get(i) for i in pairs]


def encode_words(texts: list[str], in_context: InContext) -> list[np.ndarray]:
    """The encoder's row of each token of each text."""
    return in_context([[t[0] for t in tokens(text)] for text in texts])


def _meanings(
    toks: list[Token],
    words: WordVectors | None,
    context: Context | None = None,
    encoded: np.ndarray | None = None,
    said: np.ndarray | None = None,
) -> np.ndarray:
    """Each token's static word vector, zeros where there is none: punctuation, a function word (the same held-out
    TREC score, 0.541 against 0.542, a sparser design), a word the vocabulary cannot spell; beside it, with a
    `context`, its projected row of `encoded` (every token's: leaving function words out measured 0.576 against
    0.579 on three inner folds of the TREC pool); then its columns of `said` (`_said`). No vectors, no columns."""
    out = np.zeros((len(toks), DIMS if words is not None else 0), dtype=np.float32)
    if words is not None:
        for i, (word, _, _) in enumerate(toks):
            vector = words(word) if word[0].isalnum() and word.lower() not in FUNCTION_WORDS else None
            if vector is not None:
                out[i] = vector
    if context is not None and encoded is not None:
        out = np.hstack([out, context(encoded)])
    if said is not None:
        out = np.hstack([out, said])
    return out


def _said(toks: list[Token], told: Told | None) -> np.ndarray:
    """How likely `told` says the answer is to hold each token's word, and whether it has a model of the word
    (`AddedWords.of_tokens`); zeros where nothing was told."""
    return (
        told[0].of_tokens([t[0] for t in toks], told[1]) if told is not None else np.zeros((len(toks), 2), np.float32)
    )


def _design(rows: Any, meanings: np.ndarray) -> Any:
    """The sparse features beside the word vectors, with the 32-bit indices liblinear reads (DictVectorizer may
    write 64-bit ones)."""
    from scipy.sparse import csr_matrix, hstack

    x = hstack([rows, csr_matrix(meanings)], format="csr") if meanings.shape[1] else rows.tocsr()
    x.indices = x.indices.astype(np.int32)
    x.indptr = x.indptr.astype(np.int32)
    return x


def _kept(probs: np.ndarray, threshold: float, share: bool = False) -> list[bool]:
    """Tokens at or above the threshold (with `share`, that share of the likeliest token's probability); at least the
    likeliest one (an answer is never empty)."""
    cut = threshold * float(probs.max()) if share and len(probs) else threshold
    kept = [bool(p >= cut) for p in probs]
    if len(kept) and not any(kept):
        kept[int(np.argmax(probs))] = True
    return kept
