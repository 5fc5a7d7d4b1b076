"""Any OpenAI-compatible server as a backend: one URL or a fleet, schema modes tried in order, retries."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from slm_desk import exit_codes
from slm_desk.contract.results import Tokens
from slm_desk.errors import Cancelled
from slm_desk.models.protocol import AlwaysReady, BackendFailed, Completion, IsCancelled, Messages, OnText

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.config import RuntimeConfig

# Schema modes tried in order: OpenAI's json_schema, then llama.cpp's json_object+schema, then prompt only.
SCHEMA_MODES = ("json_schema", "json_object", "none")
RETRYABLE = (408, 409, 429, 500, 502, 503, 504)
TOP_LOGPROBS = 10


class MissingKey(BackendFailed):
    """The config names an environment variable for the server's key, and it is not set: the user's to fix."""

    exit_code = exit_codes.USAGE


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
                raise MissingKey(
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


def remote(runtime: RuntimeConfig) -> OpenAIBackend:
    """The small model on OpenAI-compatible servers, from [runtime] backend and model."""
    urls = [runtime.backend] if isinstance(runtime.backend, str) else list(runtime.backend)
    return OpenAIBackend(urls, runtime.model or "default", runtime.api_key_env, runtime.timeout_s, runtime.retries)
