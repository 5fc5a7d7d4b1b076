"""Sentence embeddings from a GGUF encoder through llama.cpp (`embedding=True`): texts in, unit vectors out.

The trained head reads them beside TF-IDF, retrieval ranks pool items by them, and the novelty rule measures
how far an input is from everything the pool holds. An encoder reads at most its context (512 tokens for
MiniLM); a longer input is embedded from its first 512 tokens, which the TF-IDF features still read whole.
Loaded once per process and model, like the chat models (`backends.local`), and used by one caller at a time.

`in_context` gives each word's vector as the encoder reads it in its text (no pooling): the compression head's
features (`learn/compress.py`). llama.cpp fixes pooling per context, so that is a second set of contexts, made only
when a head reads words in context.

Batches run side by side, one single-threaded context a core (`_load`): a small encoder's steps are too short to
share between threads (one context on two cores, threads sleeping at each barrier as [runtime] wait = "passive"
has them: 97 TREC descriptions embedded a second; two contexts of one thread each: 274, and 124 beside two busy
loops).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from slm_desk import interrupts
from slm_desk.data.hardware import physical_cores
from slm_desk.errors import ModelFileError, RuntimeFailure
from slm_desk.models import preload, threads

if TYPE_CHECKING:
    from slm_desk.data.catalog import ModelRef
    from slm_desk.data.config import RuntimeConfig

# Tokens per llama.cpp batch. A non-causal encoder attends across every sequence packed in a batch, so its cost
# grows with the batch's square: on 600 TREC descriptions, 2 cores, a context a core, 32 tokens (one or two texts)
# embedded 274 a second, 64 tokens 260, 128 tokens 232.
BATCH_TOKENS = 32
MAX_TOKENS = 512  # BERT's position table
# `in_context` packs short texts to this many tokens a batch: 1,200 TREC descriptions read by MiniLM's first 2
# layers, 2 cores, 418 a second at 64 tokens, 491 at 128, 438 at 256 (one context on both cores; side by side the
# same order, 585 a second at 64 and 128)
IN_CONTEXT_TOKENS = 128
WORDS_KEPT = 100_000  # words whose WordPiece ids `in_context` remembers
MAX_CONTEXTS = 8  # contexts side by side at most (each holds its own compute buffers)
WAVE = 8  # batches a context runs between two progress reports (and what a wave's outputs hold at once)


class Embedder:
    """One embedding model, loaded on first use. `embed` returns float32 rows of unit length."""

    def __init__(self, model: ModelRef, runtime: RuntimeConfig, prefix: str = "") -> None:
        self.model = model
        self.runtime = runtime
        self.prefix = prefix  # what the model expects before each input (nomic's task prefix), as its card says
        self.lock = threading.Lock()
        self._pooled: list[Any] = []  # one single-threaded context a core
        self._unpooled: list[Any] = []  # the same without pooling, for `in_context`
        self._workers: ThreadPoolExecutor | None = None
        self._pieces: dict[str, list[int]] = {}  # each word's WordPiece ids, for `in_context`
        self.dimensions = 0

    @property
    def id(self) -> str:
        return self.model.id

    def _load(self, pooled: bool = True) -> list[Any]:
        """The contexts that run batches side by side: one a core, each on one thread (600 TREC descriptions read
        in context by MiniLM's first 2 layers, 2 cores: 714 a second, one context on both cores 484)."""
        loaded = self._pooled if pooled else self._unpooled
        if not loaded:
            cores = max(1, min(self.runtime.threads or physical_cores(), MAX_CONTEXTS))
            loaded += [self._context(pooled) for _ in range(cores)]
            self._workers = self._workers or ThreadPoolExecutor(cores, thread_name_prefix="slm-desk-encoder")
        return loaded

    def _context(self, pooled: bool) -> Any:
        threads.prepare(self.runtime)
        import llama_cpp

        from slm_desk.models.threads import quiet_llama_logs

        quiet_llama_logs()
        preload.refuse_if_no_model_allowed(self.model.path)
        from slm_desk.data.gguf_header import NotGGUF, Truncated, read_file_layout

        try:
            meta, _ = read_file_layout(self.model.path)
        except (NotGGUF, Truncated, OSError) as exc:
            raise ModelFileError(
                f"{self.model.path} is not a readable GGUF model ({exc})",
                f"pull it again: slm-desk pull {self.model.id}",
            ) from exc
        if meta.get("general.architecture") not in {"bert", "nomic-bert", "jina-bert-v2", "modern-bert"}:
            raise ModelFileError(
                f"{self.model.id} is a {meta.get('general.architecture')} model, not a sentence encoder",
                "set [models] embedding to an embedding model (`slm-desk models` lists them by role)",
            )
        context = int(meta.get(f"{meta['general.architecture']}.context_length", MAX_TOKENS))
        pooling = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if pooled else llama_cpp.LLAMA_POOLING_TYPE_NONE
        try:
            with interrupts.held():
                llm = llama_cpp.Llama(
                    model_path=str(self.model.path),
                    embedding=True,
                    n_ctx=min(context, 2048),
                    n_batch=max(BATCH_TOKENS, min(context, MAX_TOKENS)),
                    n_ubatch=max(BATCH_TOKENS, min(context, MAX_TOKENS)),
                    n_threads=1,
                    n_threads_batch=1,
                    use_mmap=True,
                    verbose=False,
                    pooling_type=pooling,  # unspecified: the model's own (mean, for MiniLM)
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"llama.cpp could not load the embedding model {self.model.path}: {exc}",
                f"pull it again: slm-desk pull {self.model.id}",
            ) from exc
        self.dimensions = int(llm.n_embd())
        self._limit = min(context, MAX_TOKENS)
        self._sequences = int(llm.context_params.n_seq_max)
        return llm

    def _side_by_side(self, contexts: list[Any], batches: list[list[list[int]]], pooled: bool) -> list[np.ndarray]:
        """Each batch of token sequences through `_run`, as many at once as there are contexts; in order."""
        if len(batches) == 1 or len(contexts) == 1 or self._workers is None:
            return [self._run(contexts[0], batch, pooled) for batch in batches]
        with interrupts.held():  # Ctrl-C after the wave: never while a context it runs on may be closed
            jobs = [
                self._workers.submit(
                    lambda k: [self._run(contexts[k], b, pooled) for b in batches[k :: len(contexts)]], k
                )
                for k in range(min(len(contexts), len(batches)))
            ]
            done = [job.result() for job in jobs]
        return [done[n % len(contexts)][n // len(contexts)] for n in range(len(batches))]

    def embed(
        self,
        texts: list[str],
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Unit-length embeddings of `texts`, one row each, in order."""
        with self.lock:
            contexts = self._load()
            llm = contexts[0]
            out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
            batches: list[list[list[int]]] = [[]]
            rows: list[list[int]] = [[]]
            for row, text in enumerate(texts):
                tokens = llm.tokenize((self.prefix + text).encode("utf-8", "replace"), add_bos=True)[: self._limit]
                size = sum(len(t) for t in batches[-1])
                if batches[-1] and (size + len(tokens) > BATCH_TOKENS or len(batches[-1]) >= self._sequences):
                    batches.append([])
                    rows.append([])
                batches[-1].append(tokens)
                rows[-1].append(row)
            done = 0
            for start in range(0, len(batches) if texts else 0, WAVE * len(contexts)):
                if cancelled is not None and cancelled():
                    raise KeyboardInterrupt
                wave = slice(start, start + WAVE * len(contexts))
                for vectors, mine in zip(self._side_by_side(contexts, batches[wave], True), rows[wave], strict=True):
                    out[mine] = vectors
                    done += len(mine)
                if progress is not None:
                    progress(done, len(texts))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def in_context(self, texts: list[list[str]]) -> list[np.ndarray]:
        """For each text, given as its words: one row per word, the mean of the encoder's outputs over the word's
        WordPiece tokens, the whole text read at once (so "bank" by a river is not "bank" in a loan). A word past
        the encoder's context (512 tokens for MiniLM) has a row of zeros, as does one with no token at all."""
        with self.lock:
            contexts = self._load(pooled=False)
            llm = contexts[0]
            cls, sep = (llm.tokenize(b"", add_bos=True) + [None, None])[:2]
            read: list[tuple[list[int], np.ndarray, int]] = []  # each text's tokens, their words, its word count
            for words in texts:
                ids: list[int] = [cls] if cls is not None else []
                owner: list[int] = [-1] * len(ids)  # which word each token belongs to
                for n, word in enumerate(words):
                    if word not in self._pieces:
                        if len(self._pieces) >= WORDS_KEPT:
                            self._pieces.clear()
                        self._pieces[word] = llm.tokenize(word.encode("utf-8", "replace"), add_bos=False)
                    pieces = self._pieces[word][: max(0, self._limit - 1 - len(ids))]
                    ids += pieces
                    owner += [n] * len(pieces)
                if sep is not None and len(ids) < self._limit:
                    ids.append(sep)
                    owner.append(-1)
                read.append((ids, np.asarray(owner, dtype=np.int64), len(words)))
            batches: list[list[int]] = [[]]  # the texts of each batch, by their place in `read`
            size = 0
            for n, (ids, _, _) in enumerate(read):
                if batches[-1] and (size + len(ids) > IN_CONTEXT_TOKENS or len(batches[-1]) >= self._sequences):
                    batches.append([])
                    size = 0
                batches[-1].append(n)
                size += len(ids)
            out: list[np.ndarray] = []
            for start in range(0, len(batches) if texts else 0, WAVE * len(contexts)):
                wave = batches[start : start + WAVE * len(contexts)]
                sequences = [[read[n][0] for n in batch] for batch in wave]
                for outputs, batch in zip(self._side_by_side(contexts, sequences, False), wave, strict=True):
                    out += _word_rows(outputs, [read[n][1] for n in batch], [read[n][2] for n in batch])
        return out

    def _run(self, llm: Any, sequences: list[list[int]], pooled: bool = True) -> np.ndarray:
        """One llama.cpp batch of whole sequences; each one's pooled embedding, or (not `pooled`) each of their
        tokens' outputs, in order."""
        import llama_cpp

        ctx = llm._ctx
        batch = llm._batch
        batch.reset()
        for seq, tokens in enumerate(sequences):
            batch.add_sequence(tokens, seq, True)
        ctx.kv_cache_clear()
        try:
            ctx.decode(batch)
        except RuntimeError as exc:
            raise RuntimeFailure(f"llama.cpp failed while embedding: {exc}", "run `slm-desk doctor`") from exc
        if not pooled:
            pointer = llama_cpp.llama_get_embeddings(ctx.ctx)
            shape = (sum(len(s) for s in sequences), self.dimensions)
            return np.ctypeslib.as_array(pointer, shape=shape).copy()
        vectors = np.empty((len(sequences), self.dimensions), dtype=np.float32)
        for seq in range(len(sequences)):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx.ctx, seq)
            vectors[seq] = np.ctypeslib.as_array(pointer, shape=(self.dimensions,))
        return vectors

    def speed(self, texts: list[str]) -> float:
        """Texts embedded per second (for `bench` and the README)."""
        started = time.perf_counter()
        self.embed(texts)
        return len(texts) / max(time.perf_counter() - started, 1e-9)

    def close(self) -> None:
        with self.lock:
            for llm in self._pooled + self._unpooled:
                llm.close()
            self._pooled, self._unpooled = [], []
            if self._workers is not None:
                self._workers.shutdown()
                self._workers = None


def _word_rows(outputs: np.ndarray, owners: list[np.ndarray], counts: list[int]) -> list[np.ndarray]:
    """Each text's word rows from a batch's token outputs (its texts' tokens one after another; `owners` says which
    word of its text each token is, -1 for none): the mean over each word's tokens, which are consecutive; zeros for
    a word with none. One pass over the batch, not one per word (0.2 ms a TREC description, as long as the first
    2 layers took to read it)."""
    starts = np.cumsum([0, *counts[:-1]])
    owner = np.concatenate([np.where(o >= 0, o + start, -1) for o, start in zip(owners, starts, strict=True)])
    rows = np.zeros((sum(counts), outputs.shape[1]), dtype=np.float32)
    read = owner >= 0
    if read.any():
        words = owner[read]
        first = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
        rows[words[first]] = np.add.reduceat(outputs[read], first, axis=0) / np.diff(np.r_[first, len(words)])[:, None]
    return np.split(rows, np.cumsum(counts)[:-1])


_local: dict[tuple[str, RuntimeConfig, str], Embedder] = {}
_local_lock = threading.Lock()


def local(model: ModelRef, runtime: RuntimeConfig, prefix: str = "") -> Embedder:
    """The embedder of this model file, made once per process (it loads on first use) and kept."""
    key = (str(model.path), runtime, prefix)
    with _local_lock:
        if key not in _local:
            if not _local:
                atexit.register(_close_local)
            _local[key] = Embedder(model, runtime, prefix)
        return _local[key]


def _close_local() -> None:
    """Free the encoders before the interpreter tears down what llama-cpp-python's destructors need."""
    with _local_lock:
        for embedder in _local.values():
            if embedder.lock.acquire(timeout=5):
                embedder.lock.release()
                embedder.close()
        _local.clear()
