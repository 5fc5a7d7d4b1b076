"""Greedy decoding under a grammar, and the last label written once it is decided.

llama.cpp's grammar sampler filters all of the vocabulary (49,152 tokens for SmolLM2) for every token, which was a
fifth of each answer's time. `Greedy` checks the likeliest token against the grammar alone and filters every
candidate only when the grammar refuses it (what llama.cpp's own `common_sampler` does): the same tokens at
temperature 0 (tests/test_runtime.py compares them). llama_cpp is imported inside the methods: it must not load
before `threads.prepare` has set OpenMP's wait policy.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from slm_desk.errors import RuntimeFailure


class Greedy:
    """The decoding loop of one loaded model (its vocabulary), with the candidate array the full filter reuses."""

    def __init__(self, vocab: Any, n_vocab: int) -> None:
        from llama_cpp._internals import LlamaTokenDataArray

        self.vocab, self.n_vocab = vocab, n_vocab
        self.candidates = LlamaTokenDataArray(n_vocab=n_vocab)

    def tokens(self, llm: Any, grammar: Any) -> Iterator[int]:
        """Each next token of `llm`'s evaluated context under `grammar`, yielded before it is evaluated (its logits
        are then still the ones it was chosen from)."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(
            self.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not sampler:
            raise RuntimeFailure("llama.cpp could not compile the answer's grammar", "run `slm-desk doctor`")
        one = (llama_cpp.llama_token_data * 1)()
        single = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        try:
            while True:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(self.n_vocab,))
                token = int(logits.argmax())
                one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
                single.size = 1
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(single))
                if not np.isfinite(one[0].logit):  # the grammar refuses the likeliest token: filter every candidate
                    token = self._allowed_argmax(sampler, logits)
                llama_cpp.llama_sampler_accept(sampler, token)
                yield token
                llm.eval([token])
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def _allowed_argmax(self, sampler: Any, logits: np.ndarray) -> int:
        """The likeliest token the grammar allows, from every candidate."""
        import llama_cpp

        data = self.candidates
        data.candidates_data.id[:] = np.arange(self.n_vocab, dtype=np.intc)
        data.candidates_data.logit[:] = logits
        data.candidates_data.p[:] = 0.0
        data.candidates.size = self.n_vocab
        data.candidates.selected = -1
        data.candidates.sorted = False
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(data.candidates))
        allowed = data.candidates_data.logit[: data.candidates.size]
        best = int(np.argmax(allowed)) if len(allowed) else -1
        if best < 0 or not np.isfinite(allowed[best]):  # accepting a refused token aborts the whole process
            raise RuntimeFailure(
                "the answer's grammar allows no token of this model's vocabulary here (a character of an allowed "
                "value it cannot write)",
                "use characters the model's tokenizer knows in the task's allowed values (`slm-desk tasks check`)",
            )
        return int(data.candidates_data.id[best])


def label_texts(piece: Any) -> list[str] | None:
    """Every text the piece's grammar lets a label value be: with or without the space, the delimiter after."""
    options = piece.schema.get("enum")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return None
    texts = [json.dumps(o, ensure_ascii=False) + piece.delimiter for o in options]
    return [*(" " + t for t in texts), *texts]


def only_label_left(sampled: bytes, texts: list[str]) -> str | None:
    """When what was sampled so far fits one label alone: the rest of its text ("" when it is whole); else None."""
    try:
        so_far = sampled.decode("utf-8")
    except UnicodeDecodeError:  # a character split across tokens: wait for the rest of it
        return None
    alive = {t.strip(" ") for t in texts if t.startswith(so_far)}
    if len(alive) != 1:
        return None
    full = next(t for t in texts if t.startswith(so_far))
    return full[len(so_far) :]
