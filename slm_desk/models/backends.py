"""Which model answers first, and the local one: a GGUF through llama.cpp (`LlamaCppBackend`).

Local models are opened here and nowhere else, one per (model, runtime, replica), and each owns a lock: two
callers of one llama.cpp context are serialised, never concurrent (concurrent use aborts inside ggml). A server
is `served.OpenAIBackend`; what every backend promises is `protocol.Backend`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from slm_desk.contract.results import Tokens
from slm_desk.errors import Cancelled
from slm_desk.models.protocol import Backend, Completion, IsCancelled, Messages, OnText
from slm_desk.models.served import remote

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.catalog import ModelRef
    from slm_desk.data.config import RuntimeConfig
    from slm_desk.models.runtime import Engine


class LlamaCppBackend:
    """A local GGUF: values-only generation, prefix KV cache, token-probability confidence. One user at a time."""

    def __init__(self, model: ModelRef, runtime: RuntimeConfig, adapter: Path | None = None) -> None:
        from slm_desk.data.adapters import TUNED

        self.ref, self.runtime, self.adapter = model, runtime, adapter
        self.model = model.id + (TUNED if adapter else "")
        self.tuned = adapter is not None
        self.where = f"local model {model.id}"
        self.lock = threading.Lock()
        self._engine: Engine | None = None
        self._loading = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The loaded model, loaded on first use: a batch the trained head answers whole never pays for it."""
        if self._engine is None:
            with self._loading:
                if self._engine is None:
                    from slm_desk.models.runtime import Engine

                    self._engine = Engine(self.ref, self.runtime, self.adapter)
        return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def load(self) -> None:
        self.engine  # noqa: B018 - the property loads it

    def busy(self) -> bool:
        return self.lock.locked()

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        from slm_desk.models.confidence import field_confidences

        if (options := _choices(task)) is not None:
            return self._choose(task, messages, options, on_text, cancelled)
        with self.lock:
            engine = self.engine
            messages, tokens, used = _fitted(engine, task, messages)
            with _blame_the_task(engine, task, messages):
                generation = engine.generate(tokens, task.output_schema, task.max_tokens, on_text, cancelled)
            if generation.finish_reason == "cancelled":
                raise Cancelled()
            fields = None
            if _is_object(generation.text):
                try:
                    fields = field_confidences(task, generation, engine)
                except (ValueError, IndexError, StopIteration):
                    fields = None  # the schema-valid text could not be mapped to tokens: no confidence, no crash
        return Completion(
            text=generation.text,
            model=self.model,
            finish_reason="length" if generation.finish_reason == "length" else "stop",
            tokens=Tokens(
                prompt=generation.prompt_tokens,
                cached=generation.cached_tokens,
                completion=generation.completion_tokens,
            ),
            fields=fields,
            examples=used,
        )

    def _choose(
        self,
        task: Task,
        messages: Messages,
        options: list[str],
        on_text: OnText | None,
        cancelled: IsCancelled | None,
    ) -> Completion:
        """The answer whose whole text is likeliest (the model's log-likelihood plus the task's prior for it). Its
        confidence is the model's own: the answer's share of the model's probability over all the options, so an
        answer the prior chose against the model's preference is not sure (measured: this ranks right answers
        above wrong ones better than the share with the prior)."""
        field = task.fields[0]
        answers = [json.dumps({field: option}, ensure_ascii=False) for option in options]
        with self.lock:
            engine = self.engine
            messages, tokens, used = _fitted(engine, task, messages, longest=max(len(a) for a in answers) // 2)
            continuations = [[*engine.tokenize_plain(answer), engine.eos] for answer in answers]
            with _blame_the_task(engine, task, messages):
                ranking = engine.rank(tokens, continuations, cancelled)
        if len(ranking.scores) < len(options):
            raise Cancelled()
        totals = [
            score + task.choice_prior.get(option, 0.0) for score, option in zip(ranking.scores, options, strict=True)
        ]
        best = max(range(len(options)), key=totals.__getitem__)
        top = max(ranking.scores)
        share = math.exp(ranking.scores[best] - top) / sum(math.exp(score - top) for score in ranking.scores)
        if on_text is not None:
            on_text(answers[best])
        return Completion(
            text=answers[best],
            model=self.model,
            finish_reason="stop",
            tokens=Tokens(
                prompt=ranking.prompt_tokens, cached=ranking.cached_tokens, completion=len(continuations[best])
            ),
            fields={field: share},
            examples=used,
        )


def _fitted(engine: Engine, task: Task, messages: Messages, longest: int = 0) -> tuple[Messages, list[int], int]:
    """The messages with as many few-shot turns as fit the context beside the input and the answer's budget (the
    least similar left out first), their tokens, and how many turns are in. At least one turn stays: when even one
    does not fit, the error names what does not fit for this input."""
    from slm_desk.contract.prompt import examples_in, without_examples

    budget = max(task.max_tokens, longest) + 8 * len(task.fields)  # the answer, and the keys values mode forces
    total = examples_in(messages)
    trial, tokens, keep = messages, [], total
    for keep in range(total, 0 if total else -1, -1):
        trial = without_examples(messages, total - keep)
        tokens = engine.tokenize(engine.render(trial))
        if len(tokens) + budget <= engine.n_ctx:
            break
    return trial, tokens, keep  # when even the fewest does not fit, the engine refuses it and _blame_the_task says why


@contextlib.contextmanager
def _blame_the_task(engine: Engine, task: Task, messages: Messages) -> Iterator[None]:
    """A prompt too long for the context is the input's fault, unless the task's own instructions leave no room for
    any input: then the message names the task file. With examples in the prompt (as many as fit were kept), it
    says what each part takes for this input."""
    from slm_desk.contract.prompt import examples_in
    from slm_desk.errors import InputTooLong, TaskError

    try:
        yield
    except InputTooLong as exc:

        def size(part: Messages) -> int:
            return len(engine.tokenize(engine.render([*part, {"role": "user", "content": ""}])))

        instructions, fixed = size(messages[:1]), size(messages[:-1])
        if instructions + task.max_tokens >= engine.n_ctx and task.max_tokens < instructions:
            raise TaskError(
                f"{task.name}'s instructions alone are {instructions:,} tokens; with {task.max_tokens} kept for the "
                f"answer they do not fit the context window of {engine.n_ctx:,} tokens, whatever the input; nothing "
                "ran",
                f"shorten the instructions in {task.source or 'the task file'}, or raise [runtime] n_ctx "
                "(or pass --ctx N)",
            ) from None
        kept = examples_in(messages)
        if not kept or task.max_tokens >= fixed:
            raise
        whole = len(engine.tokenize(engine.render(messages)))
        raise InputTooLong(
            f"input too long for {task.name}'s prompt: the input is {whole - fixed:,} tokens, the instructions "
            f"{instructions:,}, the {kept} example(s) kept (the fewest allowed; the rest were left out) "
            f"{fixed - instructions:,}, and {task.max_tokens} are kept for the answer: more than the context window "
            f"of {engine.n_ctx:,} tokens; nothing was truncated",
            "shorten the input, or raise [runtime] n_ctx in config.toml (or pass --ctx N)",
        ) from exc


def _choices(task: Task) -> list[str] | None:
    """The answers a task narrowed to one input admits, when its one field is a rewrite's edits (an enum)."""
    if task.edits is None or task.fields != [task.edits]:
        return None
    options = task.output_schema["properties"][task.edits].get("enum")
    return options if isinstance(options, list) and options else None


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


# -- local models: opened here, once per (model, runtime, replica) -------------------------------------------------

_local: dict[tuple[str, RuntimeConfig, int, str, int], LlamaCppBackend] = {}
_local_lock = threading.Lock()


def local(model: ModelRef, runtime: RuntimeConfig, replica: int = 0, adapter: Path | None = None) -> LlamaCppBackend:
    """The model for these settings (with a LoRA `adapter` applied, if given), loaded when first asked and kept.
    `replica` > 0 gives extra copies for parallel eval (weights are mmap'd and shared; each copy has its own
    context and lock)."""
    # a re-tuned adapter replaces the file at the same path: its mtime tells the new one from the loaded one
    key = (str(model.path), runtime, replica, str(adapter or ""), adapter.stat().st_mtime_ns if adapter else 0)
    with _local_lock:
        if key not in _local:
            if not _local:
                atexit.register(_close_local)
            _local[key] = LlamaCppBackend(model, runtime, adapter)
        return _local[key]


def working() -> str:
    """Which local model is loading or answering now, in words; "" when none is."""
    with _local_lock:
        for backend in _local.values():
            if backend._loading.locked():
                return f"{backend.ref.id} was loading"
            if backend.lock.locked():
                return f"{backend.ref.id} was answering"
    return ""


def _close_local() -> None:
    """Free the loaded models before the interpreter tears down the modules their destructors need (left to
    llama-cpp-python's __del__, that prints a TypeError at every exit). One still generating is left alone."""
    with _local_lock:
        for backend in _local.values():
            if backend.loaded and backend.lock.acquire(timeout=5):
                backend.engine.close()
        _local.clear()


def _local_model(model_id: str | None, default: str, task: Task | None) -> tuple[ModelRef, Path | None]:
    """The local GGUF of `model_id` (default `default`) and the adapter `slm-desk tune` trained for `task` on it."""
    from slm_desk.data import adapters
    from slm_desk.data.catalog import resolve_model

    model = resolve_model(model_id or default)
    tuned = adapters.for_task(task, model) if task is not None else None
    return model, tuned.path if tuned else None


def small_model_id(model_id: str | None, runtime: RuntimeConfig, default: str, task: Task | None = None) -> str:
    """The id `small_model` would answer as (results and calibration profiles are keyed by it), without loading."""
    from slm_desk.data import adapters

    if runtime.backend != "local":
        return model_id or runtime.model or "default"
    try:
        model, adapter = _local_model(model_id, default, task)
    except adapters.AdapterMismatch:  # run refuses it and says why; until then the base model's profile applies
        model, adapter = _local_model(model_id, default, None)
    return model.id + (adapters.TUNED if adapter else "")


def small_model(
    model_id: str | None, runtime: RuntimeConfig, default: str, replica: int = 0, task: Task | None = None
) -> Backend:
    """The backend that answers first: a server when [runtime] backend names one, else the local GGUF, with the
    adapter `slm-desk tune` trained for `task` on it, when there is one."""
    if runtime.backend != "local":
        return remote(runtime.model_copy(update={"model": model_id or runtime.model}))
    model, adapter = _local_model(model_id, default, task)
    return local(model, runtime, replica, adapter)
