"""Static word vectors from a sentence encoder's own input table: what a word means, at the cost of a lookup.

The compression head learns which words carry a topic; for a word its pool never saw, the pool's keep rate says
nothing. A BERT encoder's token embeddings (MiniLM's 30,522 WordPiece rows) already place words of one kind near
each other. A word's vector here is the mean of its pieces' rows, projected onto the table's first `DIMS`
principal axes: the encoder never runs, so the head answers at its own speed. Measured on held-out TREC topics
(`rewrite-query`): token F1 0.533 -> 0.542, and 0.547 -> 0.568 over five folds of its pool, two seeds; the same
vectors from running the encoder on each word scored no better (0.542; 0.564). On bug titles they barely move it
(0.342 -> 0.344) and slow training 2.5x, which is why the head measures them before it uses them.

`Context` is the other reading: each word as the encoder reads it in its own text, a run of the encoder per input.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slm_desk.models.layers import named as layers_named

log = logging.getLogger(__name__)
DIMS = 48  # 24, 48 and 64 axes scored alike on the TREC pool (0.566-0.569); 96 lower (0.555)
START = "\u2581"  # llama.cpp's mark on a WordPiece row that begins a word (its "##" rows lose their mark)
LONGEST = 100  # BERT's own limit: a longer "word" is unknown
# how many of the encoder's first layers read words in context: MiniLM's first 2 of 6 scored as well as all 6 on
# inner folds of both text pools (TREC 0.579 against 0.577, three shuffles; bug titles 0.337 against 0.335), 3 alike
# (0.577; 0.341), 1 lower (TREC 0.571), and 2 read 472 TREC descriptions a second against 170 (`models/layers.py`)
CONTEXT_LAYERS = 2


class WordVectors:
    """A WordPiece vocabulary and its projected rows. (Pickled in the head: 30,522 x 48 float16, 2.9 MB.)"""

    def __init__(self, model: str, pieces: dict[str, int], table: np.ndarray) -> None:
        self.model = model
        self.pieces = pieces
        self.table = table

    @classmethod
    def read(cls, model: str, path: Path) -> WordVectors | None:
        """The vectors of a GGUF encoder's WordPiece table; None for another tokenizer (it would need the model)."""
        import gguf

        try:
            reader = gguf.GGUFReader(path)
        except (OSError, ValueError) as exc:  # unreadable: the encoder itself says so, with the fix, when it loads
            log.warning("no word vectors from %s: %s", path, exc)
            return None
        kind = reader.fields.get("tokenizer.ggml.model")
        tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
        if kind is None or kind.contents() != "bert" or tensor is None:
            return None
        rows = np.asarray(gguf.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        rows = rows.reshape(-1, int(tensor.shape[0]))
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        mean, axes = _principal_axes(rows)
        return cls(model, {t: i for i, t in enumerate(tokens)}, ((rows - mean) @ axes).astype(np.float16))

    def __call__(self, word: str) -> np.ndarray | None:
        """The word's vector (float32), or None when the vocabulary cannot spell it. Lower-cased and its accents
        dropped, as an uncased BERT reads it ("über" -> "uber"); each word is split once."""
        seen: dict[str, np.ndarray | None] = self.__dict__.setdefault("_seen", {})
        if word in seen:  # as written: no accent to drop again (3,000 TREC descriptions' words, 0.14 -> 0.03 s)
            return seen[word]
        plain = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if not unicodedata.combining(c))
        if plain not in seen:
            ids = self.split(plain)
            seen[plain] = None if ids is None else self.table[ids].astype(np.float32).mean(axis=0)
        seen[word] = seen[plain]
        return seen[word]

    def __getstate__(self) -> dict[str, object]:
        return {"model": self.model, "pieces": self.pieces, "table": self.table}  # not the words seen

    def split(self, word: str) -> list[int] | None:
        """WordPiece: the longest known start, then the longest known continuations; None if a rest is unknown."""
        if not word or len(word) > LONGEST:
            return None
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = (START if start == 0 else "") + word[start:end]
                if piece in self.pieces:
                    ids.append(self.pieces[piece])
                    start = end
                    break
            else:
                return None
        return ids


InContext = Callable[[list[list[str]]], list[np.ndarray]]  # texts as words -> a row per word (`Embedder.in_context`)


@dataclass(frozen=True)
class Encoder:
    """A sentence encoder that reads each word in its text: its id, `Embedder.in_context` and how many of its first
    layers that reads (None: all of them)."""

    model: str
    in_context: InContext
    layers: int | None = None


class Context:
    """Each word's vector as the encoder reads it in its text, projected onto the first `DIMS` principal axes of the
    pool's words: what the word means there, where a static vector says what it can mean. Read by the encoder's first
    `CONTEXT_LAYERS` layers, beside the static vectors, through `train` and `eval`: held-out TREC topics 0.535 ->
    0.559 token F1 (three inner folds of the pool: 0.571 -> 0.579), held-out bug titles 0.343 -> 0.354. It costs a
    run of those layers per input at answer time (3,000 TREC descriptions through `run --jsonl`: 381 a second,
    against 1,171 without the encoder). (Pickled in the head: the encoder's id, how many of its layers it reads, a
    mean, 384 x 48 axes.)"""

    layers: int | None = None  # the class default: a head pickled before read every layer

    def __init__(self, model: str, mean: np.ndarray, axes: np.ndarray, layers: int | None = None) -> None:
        self.model = model
        self.mean = mean
        self.axes = axes
        self.layers = layers

    @classmethod
    def fit(cls, encoder: Encoder, encoded: list[np.ndarray]) -> Context | None:
        """The axes of the words in `encoded` (the `encoder`'s rows of some texts); None with too few words."""
        rows = np.vstack([m[np.abs(m).sum(axis=1) > 0] for m in encoded]) if encoded else np.zeros((0, 0))
        if len(rows) <= DIMS:
            return None
        mean, axes = _principal_axes(rows)
        return cls(encoder.model, mean.astype(np.float32), axes.astype(np.float32), encoder.layers)

    def reads(self) -> str:
        """What it reads, for a person: "all-minilm-l6-v2's first 2 layers"."""
        return layers_named(self.model, self.layers)

    def __call__(self, encoded: np.ndarray) -> np.ndarray:
        """The projected rows; a word the encoder gave no row (zeros) stays zeros."""
        projected: np.ndarray = (encoded.astype(np.float32) - self.mean) @ self.axes
        projected[np.abs(encoded).sum(axis=1) == 0] = 0
        return projected


def _principal_axes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' mean and their first `DIMS` principal axes, scaled so the projected rows have unit spread."""
    mean = rows.mean(axis=0)
    centred = rows - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending: the last columns are the first axes
    axes = vectors[:, ::-1][:, :DIMS]
    return mean, axes / ((centred @ axes).std() or 1.0)
