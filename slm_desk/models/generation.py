"""What one call to the engine produced: a generation token by token, or a ranking of fixed continuations."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    seconds: float
    prompt: list[int] = field(default_factory=list, repr=False)
    tokens: list[int] = field(default_factory=list, repr=False)
    pieces: list[bytes] = field(default_factory=list, repr=False)
    probs: list[float] = field(default_factory=list, repr=False, metadata={"doc": "raw (pre-grammar) probability"})
    # token index -> log-probabilities it was sampled from, kept for enum values (label confidence reads them)
    dists: dict[int, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Ranking:
    """What `Engine.rank` measured: one log-likelihood per continuation scored (fewer when cancelled)."""

    scores: list[float]
    prompt_tokens: int
    cached_tokens: int
    seconds: float


class Recorder:
    """Collects what a generation produced, token by token, and builds the Generation from it (Engine's helper).

    `llm` is the engine's llama_cpp.Llama (it detokenizes); `log_softmax` gives the next token's log-probabilities."""

    def __init__(
        self,
        llm: Any,
        log_softmax: Callable[[], np.ndarray],
        prompt: list[int],
        cached: int,
        on_text: Callable[[str], None] | None,
    ) -> None:
        self.llm = llm
        self.log_softmax = log_softmax
        self.prompt = list(prompt)
        self.on_text = on_text
        self.started = time.perf_counter()
        self.cached = cached  # prompt tokens the KV cache already held
        self.tokens: list[int] = []
        self.pieces: list[bytes] = []
        self.probs: list[float] = []
        self.dists: dict[int, np.ndarray] = {}
        self.out = bytearray()
        self.shown = 0
        self.sampled_count = 0

    def _append(self, token: int, prob: float) -> None:
        piece = self.llm.detokenize([token], prev_tokens=None)
        self.tokens.append(token)
        self.pieces.append(piece)
        self.probs.append(prob)
        self.out += piece
        if self.on_text is not None:
            text = self.out.decode("utf-8", "ignore")  # a character split across tokens shows when complete
            if len(text) > self.shown:
                self.on_text(text[self.shown :])
                self.shown = len(text)

    def forced(self, token: int) -> None:
        """A token the schema fixes: evaluated, never sampled."""
        self._append(token, 1.0)

    def sampled(self, token: int, keep_distribution: bool) -> None:
        """A sampled token; the context still holds the logits it came from (it is evaluated on resume)."""
        logprobs = self.log_softmax()
        if keep_distribution:
            self.dists[len(self.tokens)] = logprobs.astype(np.float32)
        self._append(token, float(np.exp(logprobs[token])))
        self.sampled_count += 1

    def generation(self, finish: FinishReason) -> Generation:
        return Generation(
            text=self.out.decode("utf-8", "replace"),
            prompt_tokens=len(self.prompt),
            cached_tokens=self.cached,
            completion_tokens=self.sampled_count,
            finish_reason=finish,
            seconds=time.perf_counter() - self.started,
            prompt=self.prompt,
            tokens=self.tokens,
            pieces=self.pieces,
            probs=self.probs,
            dists=self.dists,
        )
