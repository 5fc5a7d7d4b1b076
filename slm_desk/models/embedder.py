"""Sentence embeddings from a GGUF encoder through llama.cpp (`embedding=True`): texts in, unit vectors out.

The trained head reads them beside TF-IDF, retrieval ranks pool items by them, and the novelty rule measures
how far an input is from everything the pool holds. An encoder reads at most its context (512 tokens for
MiniLM); a longer input is embedded from its first 512 tokens, which the TF-IDF features still read whole.
Loaded once per process and model, like the chat models (`backends.local`), and used by one caller at a time.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
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
# grows with the batch's square: on 600 banking77 queries, 2 cores, 32 tokens (two or three queries) embedded
# 261 a second, 128 tokens 194, 512 tokens 100.
BATCH_TOKENS = 32
MAX_TOKENS = 512  # BERT's position table


class Embedder:
    """One embedding model, loaded on first use. `embed` returns float32 rows of unit length."""

    def __init__(self, model: ModelRef, runtime: RuntimeConfig, prefix: str = "") -> None:
        self.model = model
        self.runtime = runtime
        self.prefix = prefix  # what the model expects before each input (nomic's task prefix), as its card says
        self.lock = threading.Lock()
        self._llm: Any = None
        self.dimensions = 0

    @property
    def id(self) -> str:
        return self.model.id

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
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
        try:
            with interrupts.held():
                self._llm = llama_cpp.Llama(
                    model_path=str(self.model.path),
                    embedding=True,
                    n_ctx=min(context, 2048),
                    n_batch=max(BATCH_TOKENS, min(context, MAX_TOKENS)),
                    n_ubatch=max(BATCH_TOKENS, min(context, MAX_TOKENS)),
                    n_threads=self.runtime.threads or physical_cores(),
                    n_threads_batch=self.runtime.threads or physical_cores(),
                    use_mmap=True,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"llama.cpp could not load the embedding model {self.model.path}: {exc}",
                f"pull it again: slm-desk pull {self.model.id}",
            ) from exc
        self.dimensions = int(self._llm.n_embd())
        self._limit = min(context, MAX_TOKENS)
        self._sequences = int(self._llm.context_params.n_seq_max)
        return self._llm

    def embed(
        self,
        texts: list[str],
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Unit-length embeddings of `texts`, one row each, in order."""
        with self.lock:
            llm = self._load()
            out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
            batch: list[list[int]] = []
            rows: list[int] = []
            size = 0
            done = 0

            def flush() -> None:
                nonlocal batch, rows, size, done
                if batch:
                    vectors = self._run(llm, batch)
                    out[rows] = vectors
                    done += len(rows)
                    if progress is not None:
                        progress(done, len(texts))
                batch, rows, size = [], [], 0

            for row, text in enumerate(texts):
                if cancelled is not None and cancelled():
                    raise KeyboardInterrupt
                encoded = (self.prefix + text).encode("utf-8", "replace")
                tokens = llm.tokenize(encoded, add_bos=True)[: self._limit]
                if batch and (size + len(tokens) > BATCH_TOKENS or len(batch) >= self._sequences):
                    flush()
                batch.append(tokens)
                rows.append(row)
                size += len(tokens)
            flush()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def _run(self, llm: Any, sequences: list[list[int]]) -> np.ndarray:
        """One llama.cpp batch of whole sequences; each one's pooled embedding."""
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
            if self._llm is not None:
                self._llm.close()
                self._llm = None


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
