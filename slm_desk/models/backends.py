"""One protocol for every model that answers a task: a local GGUF through llama.cpp, or an OpenAI-compatible server.

The pipeline asks a backend for one completion of a task's messages and gets the text, token counts and, where
the backend can tell, per-field confidence. Everything else (validation, retry, calibration, decision) is the
pipeline's, so the small model, the escalation model and the distillation teacher are judged the same way.

Local models are opened here and nowhere else, one per (model, runtime, replica), and each owns a lock: two
callers of one llama.cpp context are serialised, never concurrent (concurrent use aborts inside ggml).
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from slm_desk.contract.results import Tokens
from slm_desk.errors import Cancelled, SlmDeskError

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.catalog import ModelRef
    from slm_desk.data.config import RuntimeConfig
    from slm_desk.models.runtime import Engine

Messages = list[dict[str, str]]
OnText = Callable[[str], None]
IsCancelled = Callable[[], bool]

# Schema modes tried in order: OpenAI's json_schema, then llama.cpp's json_object+schema, then prompt only.
SCHEMA_MODES = ("json_schema", "json_object", "none")
RETRYABLE = (408, 409, 429, 500, 502, 503, 504)
TOP_LOGPROBS = 10


class BackendFailed(SlmDeskError):
    """A model could not be asked (server down, malformed reply, budget); the item is reported, never lost."""


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: Literal["stop", "length"]
    tokens: Tokens
    fields: dict[str, float] | None = None
    note: str | None = None  # why there is no confidence, when there is none


class Backend(Protocol):
    model: str  # the id results report
    where: str  # where the text goes, for consent prompts and error messages
    tuned: bool  # a LoRA adapter trained for the task is on: prompt it as it was trained, with no few-shot turns

    def busy(self) -> bool:
        """Another caller is using the model now (a local model answers one at a time), so a call would wait."""
        ...

    def load(self) -> None:
        """Make the model ready now (a local one loads), so a model that cannot load is refused before the first
        input, not at it. Without it a local model loads when it is first asked."""
        ...

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion: ...


@runtime_checkable
class BatchBackend(Protocol):
    """A backend that answers many inputs in one call (the trained head): declared, so the batch path can ask."""

    model: str

    def complete_many(self, task: Task, texts: list[str]) -> list[Completion]: ...


class AlwaysReady:
    """What the Backend protocol asks beyond `complete`, for a backend with nothing to load and no one-at-a-time
    model: a server (it queues requests itself; one that is down is reported per item), the trained head
    (scikit-learn predicts from any thread), a model loaded on first ask, a target that cannot be asked."""

    tuned = False  # prompted like the base model

    def busy(self) -> bool:
        return False

    def load(self) -> None:
        return None


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
            tokens = engine.tokenize(engine.render(messages))
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
            tokens = engine.tokenize(engine.render(messages))
            continuations = [[*engine.tokenize_plain(answer), engine.eos] for answer in answers]
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
        )


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


class OpenAIBackend(AlwaysReady):
    """Any OpenAI-compatible server (llama.cpp's llama-server, vLLM, Ollama, a hosted API), or several of them.

    With several base URLs, requests go round-robin and a request that cannot connect moves to the next server,
    so a fleet behind no load balancer still finishes a batch when one server dies. Thread-safe.
    """

    def __init__(
        self,
        urls: list[str],
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60,
        retries: int = 2,
        max_tokens_factor: int = 1,
    ) -> None:
        import openai

        key = "not-needed"
        if api_key_env:
            key = os.environ.get(api_key_env) or ""
            if not key:
                raise BackendFailed(
                    f"the server needs an API key but {api_key_env} is not set",
                    f"export {api_key_env}=... (the key is read from the environment, never stored)",
                )
        self.urls = [u.rstrip("/") for u in urls]
        self.model = model
        self.where = ", ".join(self.urls)
        self.api_key_env = api_key_env
        self.retries = retries
        self.timeout_s = timeout_s
        self.max_tokens_factor = max_tokens_factor
        self._clients = [openai.OpenAI(base_url=u, api_key=key, timeout=timeout_s, max_retries=0) for u in self.urls]
        self._next = itertools.count()
        # learned once per process, shared by every thread of a --concurrency batch: a step down happens only from
        # the form the rejected request used (compare and swap), so two rejections in flight step down once
        self._mode = 0  # index into SCHEMA_MODES
        self._logprobs = True
        self._mode_works = False  # a request in the current form was answered: a later 500 is the server's own
        self._learning = threading.Lock()

    def _body(self, task: Task, messages: Messages, mode_index: int, logprobs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": task.max_tokens * self.max_tokens_factor,
        }
        if logprobs:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        mode = SCHEMA_MODES[mode_index]
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": task.name.replace("-", "_"), "schema": task.output_schema},
            }
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": task.output_schema}
        return body

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        import openai

        failures, last = 0, ""
        server = next(self._next) % len(self._clients)
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled()
            client, url = self._clients[server], self.urls[server]
            mode, logprobs = self._mode, self._logprobs  # what this request asks in, read once
            try:
                response = client.chat.completions.create(**self._body(task, messages, mode, logprobs))
                completion = self._read(task, response)
                if mode == self._mode:
                    self._mode_works = True
                if on_text is not None:
                    on_text(completion.text)
                return completion
            except openai.APIStatusError as exc:
                detail = _detail(exc)
                if exc.status_code in (400, 422, 500) and "logprobs" in detail and logprobs:
                    with self._learning:
                        self._logprobs = False  # the server cannot return logprobs: ask without them
                    continue
                if self._format_rejected(exc.status_code, detail, mode):
                    continue  # the server does not take this response_format: the next form, once for everyone
                if exc.status_code in (401, 403):
                    raise BackendFailed(
                        f"{url} refused the request (HTTP {exc.status_code})",
                        f"check the key in {self.api_key_env or 'api_key_env'}",
                    ) from exc
                last = f"{url} answered HTTP {exc.status_code}: {detail[:200]}"
                if exc.status_code not in RETRYABLE:
                    break
            except openai.APITimeoutError:
                last = f"{url} timed out after {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                last = f"{url} is unreachable ({_cause(exc)})"
            except (openai.APIError, TypeError, AttributeError, IndexError, KeyError, ValueError) as exc:
                raise BackendFailed(
                    f"{url} did not answer with a chat completion ({type(exc).__name__}: {str(exc)[:200]})",
                    "check the base URL: it usually ends in /v1",
                ) from exc
            failures += 1
            if failures > self.retries:
                break
            server = (server + 1) % len(self._clients)  # the next try goes to the next server, if there is one
            time.sleep(min(0.25 * 2 ** (failures - 1), 8))
        tries = f" after {failures} tries" if failures > 1 else ""
        raise BackendFailed(f"{last}{tries}", f"check that the server at {self.where} is running")

    def _format_rejected(self, status: int, detail: str, mode: int) -> bool:
        """Step down from the form `mode` when the server refused it; True when the request should go again.
        A bare 500 counts as refusing json_schema while no json_schema request has been answered: some servers
        (llama-cpp-python 0.3.x) answer it with a 500 whose body may be empty. It never drops constrained decoding
        altogether: only a refusal that says so moves on to prompting alone."""
        if mode >= len(SCHEMA_MODES) - 1:
            return False
        named = "response_format" in detail or "json_object" in detail or "json_schema" in detail
        bare_500 = status == 500 and SCHEMA_MODES[mode] == "json_schema" and not self._mode_works
        if not (status in (400, 422) or named or bare_500):
            return False
        with self._learning:
            if self._mode == mode:  # not stepped already by another request in flight
                self._mode = mode + 1
                self._mode_works = False
        return True

    def _read(self, task: Task, response: Any) -> Completion:
        """The typed response, checked: a malformed body raises here, inside complete's error handling."""
        choice = response.choices[0]
        text = choice.message.content
        if not isinstance(text, str):
            raise ValueError("the reply has no message content")
        usage = response.usage
        fields: dict[str, float] | None = None
        note: str | None = "the server returned no logprobs"
        content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
        if content:
            from slm_desk.models.confidence import logprob_confidences

            fields, note = logprob_confidences(task, text, content)
        return Completion(
            text=text,
            model=str(response.model or self.model),
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            tokens=Tokens(
                prompt=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            fields=fields,
            note=None if fields else note,
        )


def _detail(exc: Any) -> str:
    try:
        return str(exc.response.text)[:400]
    except Exception:  # the body may be unreadable; the status code still says enough
        return str(exc)[:400]


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


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


def _close_local() -> None:
    """Free the loaded models before the interpreter tears down the modules their destructors need (left to
    llama-cpp-python's __del__, that prints a TypeError at every exit). One still generating is left alone."""
    with _local_lock:
        for backend in _local.values():
            if backend.loaded and backend.lock.acquire(timeout=5):
                backend.engine.close()
        _local.clear()


def remote(runtime: RuntimeConfig) -> OpenAIBackend:
    """The small model on OpenAI-compatible servers, from [runtime] backend and model."""
    urls = [runtime.backend] if isinstance(runtime.backend, str) else list(runtime.backend)
    return OpenAIBackend(urls, runtime.model or "default", runtime.api_key_env, runtime.timeout_s, runtime.retries)


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
