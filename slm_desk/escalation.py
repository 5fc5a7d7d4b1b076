"""Escalation: the same task contract sent to a larger model, its answer validated exactly like the small one's.

Two kinds of larger model: any OpenAI-compatible endpoint (Ollama, llama.cpp's server, LM Studio, vLLM, a hosted
API) or a larger local GGUF. Escalation is off unless configured, and pipe mode only escalates with --escalate
(or `auto = true`). The API key is read from the environment variable the config names, never stored or logged.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from slm_desk import prompt
from slm_desk.errors import SlmDeskError
from slm_desk.validation import validate_output

if TYPE_CHECKING:
    from slm_desk.config import EscalationConfig, RuntimeConfig
    from slm_desk.runtime import Engine
    from slm_desk.store import Store
    from slm_desk.tasks import Task

# Schema modes tried in order: OpenAI's json_schema, then llama.cpp's json_object+schema, then prompt only.
SCHEMA_MODES = ("json_schema", "json_object", "none")
RETRYABLE = (408, 429, 500, 502, 503, 504)


class EscalationFailed(SlmDeskError):
    """The larger model could not be asked; the item goes to review with this reason."""


@dataclass(frozen=True)
class Answer:
    model: str
    output: dict[str, Any] | None
    raw: str
    errors: list[str]
    attempts: int
    latency_ms: int


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteEscalator:
    def __init__(self, config: EscalationConfig, store: Store | None) -> None:
        assert config.base_url and config.model
        self.config = config
        self.store = store
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.model = config.model
        self._mode = 0

    @property
    def where(self) -> str:
        return self.config.base_url or ""

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise EscalationFailed(
                    f"escalation needs an API key but {self.config.api_key_env} is not set",
                    f"export {self.config.api_key_env}=... (the key is read from the environment, never stored)",
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, task: Task, messages: list[dict[str, str]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": task.max_tokens * 2,
        }
        mode = SCHEMA_MODES[self._mode]
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": task.name.replace("-", "_"), "schema": task.output_schema},
            }
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": task.output_schema}
        return body

    def _complete(self, task: Task, messages: list[dict[str, str]]) -> str:
        """One chat completion, with retries and backoff; returns the message text."""
        headers = self._headers()
        failures, last = 0, ""
        while True:
            body = json.dumps(self._body(task, messages)).encode()
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                    payload = json.loads(response.read())
                return str(payload["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:400].decode("utf-8", "replace")
                rejected_format = exc.code in (400, 422) or "response_format" in detail
                if rejected_format and self._mode < len(SCHEMA_MODES) - 1:
                    self._mode += 1  # the server does not take this response_format: try the next form
                    continue
                if exc.code in (401, 403):
                    raise EscalationFailed(
                        f"escalation endpoint {self.where} refused the request (HTTP {exc.code})",
                        f"check the key in {self.config.api_key_env or '[escalation] api_key_env'}",
                    ) from exc
                last = f"answered HTTP {exc.code}: {detail[:200]}"
                if exc.code not in RETRYABLE:
                    break
            except TimeoutError:
                last = f"timed out after {self.config.timeout_s:g} s"
            except urllib.error.URLError as exc:
                timed_out = isinstance(exc.reason, (TimeoutError, socket.timeout))
                last = f"timed out after {self.config.timeout_s:g} s" if timed_out else f"unreachable ({exc.reason})"
            except (KeyError, IndexError, ValueError) as exc:
                raise EscalationFailed(
                    f"escalation endpoint {self.where} did not answer with a chat completion: {exc!r}",
                    "check base_url: it usually ends in /v1",
                ) from exc
            failures += 1
            if failures > self.config.retries:
                break
            time.sleep(min(0.5 * 2 ** (failures - 1), 8))
        tries = f" after {failures} tries" if failures > 1 else ""
        raise EscalationFailed(
            f"escalation endpoint {self.where} {last}{tries}",
            f"check that the server at {self.where} is running; the item is kept for review",
        )

    def ask(self, task: Task, text: str) -> Answer:
        """The task's messages, answered and validated (with one corrective retry, as for the small model)."""
        check_budget(self.config, self.store)
        started = time.perf_counter()
        messages = prompt.task_messages(task, text)
        output, errors, raw, attempts = None, ["no answer"], "", 0
        ok = False
        try:
            while attempts < 2:
                attempts += 1
                raw = self._complete(task, messages)
                output, errors = validate_output(task, raw, text)
                if not errors:
                    break
                messages = prompt.retry_messages(task, text, raw, errors)
            ok = True
        finally:
            if self.store is not None:
                self.store.log_escalation(self.where, ok)
        return Answer(
            self.model,
            output if not errors else None,
            raw,
            errors,
            attempts,
            round((time.perf_counter() - started) * 1000),
        )


def check_budget(config: EscalationConfig, store: Store | None) -> None:
    if store is not None and store.escalations_today() >= config.max_per_day:
        raise EscalationFailed(
            f"the daily escalation budget of {config.max_per_day} calls is used up",
            "raise [escalation] max_per_day in config.toml, or wait until tomorrow",
        )


class LocalEscalator:
    """A larger installed GGUF model, loaded on first use and run through the same TaskRunner."""

    def __init__(self, config: EscalationConfig, store: Store | None, runtime: RuntimeConfig) -> None:
        assert config.local_model
        self.config = config
        self.store = store
        self.runtime = runtime
        self.model = config.local_model
        self._engine: Engine | None = None

    @property
    def where(self) -> str:
        return f"local model {self.model}"

    def ask(self, task: Task, text: str) -> Answer:
        from slm_desk.catalog import resolve_model
        from slm_desk.runner import TaskRunner
        from slm_desk.runtime import Engine

        check_budget(self.config, self.store)
        if self._engine is None:
            try:
                self._engine = Engine(resolve_model(self.model), self.runtime)
            except SlmDeskError as exc:
                raise EscalationFailed(
                    f"escalation model {self.model} cannot be loaded: {exc.message}", exc.hint
                ) from exc
        result = TaskRunner(task, self._engine).run(text)
        if self.store is not None:
            self.store.log_escalation(self.where, True)
        raw = result.rejected_output or json.dumps(result.output)
        return Answer(self.model, result.output, raw, result.errors, result.attempts, result.latency_ms)


Escalator = RemoteEscalator | LocalEscalator


def make_escalator(config: EscalationConfig, store: Store | None, runtime: RuntimeConfig) -> Escalator | None:
    if not config.enabled:
        return None
    if config.local_model:
        return LocalEscalator(config, store, runtime)
    return RemoteEscalator(config, store)
