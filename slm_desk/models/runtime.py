"""llama.cpp behind one small class: load once, render chat prompts, generate under a JSON grammar.

The fixed part of a task's prompt (instructions and few-shot examples) is a token prefix shared by every
input. `Llama.generate` keeps the longest common prefix of the previous call in the KV cache, so a batch
pays for that prefix once; `Generation.cached_tokens` reports how much was reused.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slm_desk import interrupts
from slm_desk.data.catalog import ModelRef
from slm_desk.data.config import RuntimeConfig
from slm_desk.data.hardware import physical_cores
from slm_desk.errors import InputTooLong, ModelFileError, RuntimeFailure, TaskError
from slm_desk.models import decoding, preload, threads
from slm_desk.models.generation import FinishReason, Generation, Ranking, Recorder
from slm_desk.models.threads import quiet_llama_logs
from slm_desk.models.values import values_layout, values_only_supported


@contextlib.contextmanager
def _llama_errors() -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:
        raise RuntimeFailure(f"llama.cpp failed while generating: {exc}", "run `slm-desk doctor`") from exc


GRAMMARS_KEPT = 256  # compiled grammars per loaded model, oldest dropped first
FORCE_LAST_LABEL = True  # see generate_values; a model test compares the text and confidence with it off


class Engine:
    """One loaded GGUF model. Not thread-safe: one generation at a time."""

    def __init__(self, model: ModelRef, config: RuntimeConfig, adapter: Path | None = None) -> None:
        threads.prepare(config)
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        quiet_llama_logs()
        self.model = model
        self.config = config
        self.adapter = adapter
        self.threads = config.threads or physical_cores()
        gpu_layers = config.gpu_layers
        if gpu_layers == "auto":
            gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        self.gpu_layers = gpu_layers
        preload.check_before_loading(model, config)
        preload.refuse_if_no_model_allowed(model.path)
        started = time.perf_counter()
        try:
            with interrupts.held():  # Ctrl-C while llama.cpp loads: delivered when it returns, never swallowed
                self._llm = llama_cpp.Llama(
                    model_path=str(model.path),
                    n_ctx=config.n_ctx,
                    n_batch=config.n_batch,
                    n_threads=self.threads,
                    n_gpu_layers=gpu_layers,
                    use_mmap=True,
                    seed=0,
                    verbose=False,
                    lora_path=str(adapter) if adapter else None,
                )
        except (ValueError, RuntimeError) as exc:
            what = f"{model.path} with the adapter {adapter}" if adapter else str(model.path)
            raise ModelFileError(
                f"llama.cpp could not load {what}: {exc}",
                "check the file with `slm-desk doctor`; a partial download must be pulled again",
            ) from exc
        self.load_seconds = time.perf_counter() - started
        model_ptr = self._llm._model
        self._eos = self._llm.token_eos()
        bos_text = model_ptr.token_get_text(self._llm.token_bos())
        self._bos_text = bos_text
        self._add_bos = self._llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeFailure(f"{model.path} has no chat template", "use an instruct model whose GGUF carries one")
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=model_ptr.token_get_text(self._eos), bos_token=bos_text
        )
        self._grammars: dict[str, Any] = {}
        self._vocab = llama_cpp.llama_model_get_vocab(model_ptr.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._get_logits = llama_cpp.llama_get_logits_ith
        self._n_vocab = self._llm.n_vocab()
        self._decoder = decoding.Greedy(self._vocab, self._n_vocab)
        self._check_not_flat()

    def _check_not_flat(self) -> None:
        """One token through the model: weights that are all zero give every next token the same score, and every
        answer a confidence of 1/vocabulary, accepted as if it meant something. Refuse such a file at once."""
        logits = self.next_logprobs(self.tokenize_plain("Hello"))
        finite = logits[np.isfinite(logits)]
        self._llm.reset()
        if finite.size == logits.size and float(np.ptp(finite)) < 1e-3:
            raise ModelFileError(
                f"{self.model.path} gives every next token the same probability: its weights are zero or damaged",
                "pull it again (`slm-desk models rm ID` then `slm-desk pull ID`), or pass another .gguf file",
            )

    def close(self) -> None:
        """Free the model and its context now (the lock holder guarantees no generation is running)."""
        self._grammars.clear()
        self._llm.close()

    @property
    def eos(self) -> int:
        return int(self._eos)

    @property
    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def render(self, messages: list[dict[str, str]]) -> str:
        """The chat template applied to messages, ending with the assistant's turn opened."""
        return self._formatter(messages=messages).prompt  # type: ignore[arg-type]  # plain dicts are the TypedDicts

    def tokenize(self, text: str) -> list[int]:
        add_bos = self._add_bos and not text.startswith(self._bos_text)
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def grammar(self, schema: dict[str, Any], delimiter: str | None = None) -> Any:
        """The llama.cpp grammar for a JSON Schema, compiled once per schema.

        With a `delimiter` the grammar is for one value inside an object: an optional leading space, the value,
        then the delimiter (',' or '}'). Tokenizers glue those to the value (' "' and '",' are single tokens),
        so the model must be allowed to produce them exactly as it would in free JSON.
        """
        from llama_cpp.llama_grammar import LlamaGrammar

        from slm_desk.models import grammar

        key = json.dumps(schema, sort_keys=True) + str(delimiter)
        if key not in self._grammars:
            gbnf = grammar.to_gbnf(schema, list(schema.get("properties", {})))
            if delimiter is not None:
                renamed = re.sub(r"^root ::=", "value ::=", gbnf, flags=re.MULTILINE)
                gbnf = f'root ::= " "? value {json.dumps(delimiter)}\n' + renamed
            if not grammar.compiles(gbnf, self._vocab):  # the task's to fix, said once: never a per-input failure
                raise TaskError(
                    "llama.cpp cannot compile the grammar of the task's schema: "
                    + "; ".join(grammar.problems(schema, self._vocab)),
                    "`slm-desk tasks check TASK` names what breaks it; simplify that field's schema",
                )
            if len(self._grammars) >= GRAMMARS_KEPT:  # schemas narrowed to one input's ids come and go
                del self._grammars[next(iter(self._grammars))]
            self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

    def check_fits(self, prompt_tokens: int, max_tokens: int, fixed: int = 0) -> None:
        """Refuse what cannot fit: the prompt, the task's max_tokens and `fixed` tokens of schema keys."""
        if prompt_tokens + max_tokens + fixed > self.n_ctx and max_tokens > prompt_tokens:  # the answer is at fault
            raise InputTooLong(
                f"the task reserves up to {max_tokens} tokens for the answer, which with the {prompt_tokens}-token "
                f"prompt exceeds the context window of {self.n_ctx} tokens; nothing was run",
                "lower max_tokens in the task file, or raise [runtime] n_ctx in config.toml (or pass --ctx N)",
            )
        if prompt_tokens + max_tokens + fixed > self.n_ctx:
            raise InputTooLong(
                f"input too long: the prompt is {prompt_tokens} tokens and the answer needs up to "
                f"{max_tokens + fixed}, "
                f"but the context window is {self.n_ctx} tokens; nothing was truncated",
                "shorten the input, or raise [runtime] n_ctx in config.toml (or pass --ctx N)",
            )

    def generate(
        self,
        tokens: list[int],
        schema: dict[str, Any],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        mode: str | None = None,
    ) -> Generation:
        """Greedy generation of a JSON answer for `schema` (values-only when the schema allows it)."""
        if (mode or self.config.generation) == "values" and values_only_supported(schema):
            return self.generate_values(tokens, schema, max_tokens, on_text, cancelled)
        return self.generate_json(tokens, schema, max_tokens, on_text, cancelled)

    def generate_json(
        self,
        tokens: list[int],
        schema: dict[str, Any],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Generation:
        """The whole object sampled token by token under one JSON grammar."""
        record = self._start(tokens, max_tokens, on_text)
        finish: FinishReason = "length"
        with _llama_errors():
            for token in self._greedy(tokens, self.grammar(schema)):
                if self._is_eog(self._vocab, token):
                    finish = "stop"
                    break
                record.sampled(token, keep_distribution=True)
                if cancelled is not None and cancelled():
                    finish = "cancelled"
                    break
                if record.sampled_count >= max_tokens:
                    break
        return record.generation(finish)

    def generate_values(
        self,
        tokens: list[int],
        schema: dict[str, Any],
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Generation:
        """Sample only the values; the keys and punctuation (fixed by the schema) are evaluated as one batch.

        Grammar-constrained sampling costs per token, and in a small JSON answer most tokens are keys, quotes
        and commas the schema already fixes. Feeding those as forced tokens (a prompt-speed batch) and sampling
        only each value under its own sub-grammar gives the same JSON for fewer sampled tokens.
        """
        pieces = values_layout(schema)
        record = self._start(tokens, max_tokens, on_text, fixed=8 * len(pieces))
        context = list(tokens)
        finish: FinishReason = "stop"
        with _llama_errors():
            for number, piece in enumerate(pieces):
                for token in self.tokenize_plain(piece.key_text):
                    record.forced(token)
                    context.append(token)
                grammar = self.grammar(piece.schema, delimiter=piece.delimiter)
                # the last value, a label: once one label alone fits what was sampled, the rest of it is written,
                # not sampled (nothing is generated after it, so no later choice is conditioned on how)
                labels = decoding.label_texts(piece) if FORCE_LAST_LABEL and number == len(pieces) - 1 else None
                start = len(record.out)
                ended = False
                for token in self._greedy(context, grammar):
                    if self._is_eog(self._vocab, token):
                        ended = True
                        break
                    record.sampled(token, keep_distribution="enum" in piece.schema)
                    context.append(token)
                    rest = decoding.only_label_left(bytes(record.out[start:]), labels) if labels else None
                    if rest is not None:
                        for forced in self.tokenize_plain(rest) if rest else []:
                            record.forced(forced)
                        ended = True
                        break
                    if cancelled is not None and cancelled():
                        finish = "cancelled"
                        break
                    if record.sampled_count >= max_tokens:
                        finish = "length"
                        break
                if not ended:
                    break
        return record.generation(finish)

    def _greedy(self, tokens: list[int], grammar: Any) -> Iterator[int]:
        """Greedy decoding under `grammar` after `tokens` (their cached prefix reused): see decoding.Greedy."""
        llm = self._llm
        llm.n_tokens = self._reusable(tokens)
        llm.eval(tokens[llm.n_tokens :])
        yield from self._decoder.tokens(llm, grammar)

    def rank(
        self, tokens: list[int], continuations: list[list[int]], cancelled: Callable[[], bool] | None = None
    ) -> Ranking:
        """The log-likelihood of each continuation after the prompt `tokens`, summed over its tokens.

        Choosing among a few dozen fixed answers by greedy grammar decoding commits at the first token where they
        differ; scoring each whole answer does not (measured on rewrite-followup: the pronoun's referent is
        often decided late). The prompt is evaluated once (its prefix reused from the cache), then each
        continuation as one batch whose every position returns logits. Cancelled: the scores so far.
        """
        self.check_fits(len(tokens), max(map(len, continuations), default=0))
        llm = self._llm
        cached = self._reusable(tokens)
        started = time.perf_counter()
        self._check_prompt(tokens)
        first = self._log_softmax()
        scores: list[float] = []
        with _llama_errors():
            for continuation in continuations:
                if cancelled is not None and cancelled():
                    break
                scores.append(float(first[continuation[0]]) + self._continuation_logprob(len(tokens), continuation))
        llm.n_tokens = len(tokens)  # the prompt stays cached; what the continuations left is overwritten next
        return Ranking(scores, len(tokens), cached, time.perf_counter() - started)

    def _continuation_logprob(self, n_past: int, continuation: list[int]) -> float:
        """Sum of log P(token | everything before it) over continuation[1:], the prompt being n_past tokens."""
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        total = 0.0
        fed = continuation[:-1]  # the last token's own logits predict nothing we score
        for start in range(0, len(fed), llm.n_batch):
            chunk = fed[start : start + llm.n_batch]
            llm._batch.set_batch(batch=chunk, n_past=n_past + start, logits_all=True)
            llm._ctx.decode(llm._batch)
            for i in range(len(chunk)):
                total += float(self._log_softmax(i)[continuation[start + i + 1]])
        return total

    def _start(
        self, tokens: list[int], max_tokens: int, on_text: Callable[[str], None] | None, fixed: int = 0
    ) -> Recorder:
        """What every generation does first: refuse a prompt that does not fit, evaluate it, start recording."""
        self.check_fits(len(tokens), max_tokens, fixed=fixed)
        record = Recorder(self._llm, self._log_softmax, tokens, self._reusable(tokens), on_text)
        self._check_prompt(tokens)
        return record

    def _check_prompt(self, tokens: list[int]) -> None:
        """Evaluate the prompt and refuse non-finite logits: with them, llama.cpp's grammar sampler finds no
        allowed token and aborts the whole process (a GGUF whose header is fine but whose weights are not)."""
        llm = self._llm
        with _llama_errors():
            llm.n_tokens = self._reusable(tokens)
            llm.eval(tokens[llm.n_tokens :])
        pointer = self._get_logits(llm._ctx.ctx, -1)
        if not np.isfinite(np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))).all():
            if self.adapter is not None:  # the base alone may be fine: the adapter is the first suspect
                raise RuntimeFailure(
                    f"{self.model.path.name} with the adapter {self.adapter.name} computes non-finite values: "
                    "the adapter's weights are damaged",
                    "run with --no-adapter to check the base model, then tune again or `slm-desk adapters rm TASK`",
                )
            raise RuntimeFailure(
                f"{self.model.path.name} computes non-finite values: its weights are damaged",
                "pull the model again (`slm-desk models rm ID` then `slm-desk pull ID`), or check it with `doctor`",
            )

    def _reusable(self, tokens: list[int]) -> int:
        """How many of `tokens` the KV cache already holds and a new evaluation may keep: at most all but the last,
        which is evaluated again so that its logits are the current ones."""
        return min(int(self._llm.longest_token_prefix(self._llm._input_ids.tolist(), tokens)), len(tokens) - 1)

    def _log_softmax(self, index: int = -1) -> np.ndarray:
        """Log-probabilities of the next token after a position of the last batch (default: its last; before any
        grammar)."""
        pointer = self._get_logits(self._llm._ctx.ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        log_probs: np.ndarray = shifted - np.log(np.exp(shifted).sum())
        return log_probs

    def next_logprobs(self, tokens: list[int]) -> np.ndarray:
        """Log-probabilities of the token after `tokens` (before any grammar); reuses the KV cache's prefix."""
        llm = self._llm
        llm.n_tokens = self._reusable(tokens)
        llm.eval(tokens[llm.n_tokens :])
        return self._log_softmax()

    def prompt_speed(self, tokens: list[int]) -> float:
        """Prompt evaluation speed in tokens/s, from an empty cache (for `bench`)."""
        self._llm.reset()
        started = time.perf_counter()
        self._llm.eval(tokens)
        return len(tokens) / max(time.perf_counter() - started, 1e-9)

    def free_text_speed(self, tokens: list[int], n: int) -> float:
        """Unconstrained greedy generation speed in tokens/s over up to `n` tokens (for `bench`)."""
        started = time.perf_counter()
        produced = 0
        with _llama_errors():
            for token in self._llm.generate(tokens, temp=0.0, reset=True):
                produced += 1
                if produced >= n or self._is_eog(self._vocab, token):
                    break
        return produced / max(time.perf_counter() - started, 1e-9)

    def tokenize_plain(self, text: str) -> list[int]:
        """Tokens of a text fragment in the middle of a sequence: no BOS, no special tokens."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
