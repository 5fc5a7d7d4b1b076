"""Escalation: where hard cases go, and the daily budget that limits how many may go.

The larger model is any OpenAI-compatible endpoint (Ollama, llama.cpp's server, LM Studio, vLLM, a hosted API)
or a larger local GGUF; either is a backend that the same pipeline drives, so its answers are validated exactly
like the small model's. Escalation is off unless configured, and pipe mode only escalates with --escalate (or
`auto = true`). The API key is read from the environment variable the config names, never stored or logged.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from slm_desk.errors import SlmDeskError
from slm_desk.models.protocol import (
    AlwaysReady,
    Backend,
    BackendFailed,
    Completion,
    IsCancelled,
    Messages,
    OnText,
)
from slm_desk.models.served import OpenAIBackend

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.config import EscalationConfig, RuntimeConfig
    from slm_desk.data.store import Store


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalOnFirstUse(AlwaysReady):
    """A larger installed GGUF, loaded when it is first asked (loading it for every run would waste seconds)."""

    def __init__(self, model_id: str, runtime: RuntimeConfig) -> None:
        self.model = model_id
        self.where = f"local model {model_id}"
        self.runtime = runtime

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        from slm_desk.data.catalog import resolve_model
        from slm_desk.models import backends

        try:  # backends.local loads the model once and keeps it
            backend = backends.local(resolve_model(self.model), self.runtime)
        except SlmDeskError as exc:
            raise BackendFailed(f"escalation model {self.model} cannot be loaded: {exc.message}", exc.hint) from exc
        return backend.complete(task, messages, on_text, cancelled)


def escalation_backend(config: EscalationConfig, runtime: RuntimeConfig) -> Backend | None:
    if not config.enabled:
        return None
    if config.local_model:
        return LocalOnFirstUse(config.local_model, runtime)
    assert config.base_url and config.model  # the config's validator guarantees it
    try:
        return OpenAIBackend(
            [config.base_url], config.model, config.api_key_env, config.timeout_s, config.retries, max_tokens_factor=2
        )
    except BackendFailed as exc:
        return Unavailable(config.base_url, config.model, exc)


class Unavailable(AlwaysReady):
    """An escalation target that cannot be asked (no API key): every ask fails with the reason, at ask time."""

    def __init__(self, where: str, model: str, error: BackendFailed) -> None:
        self.where, self.model, self.error = where, model, error

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        raise self.error


class Budget:
    """Escalation calls allowed per local day, counted in the store."""

    def __init__(self, config: EscalationConfig, store: Store | None) -> None:
        self.config = config
        self.store = store

    def check(self) -> None:
        if self.store is not None and self.store.escalations_today() >= self.config.max_per_day:
            raise BackendFailed(
                f"the daily escalation budget of {self.config.max_per_day} calls is used up",
                "raise [escalation] max_per_day in config.toml, or wait until tomorrow",
            )

    def spent(self, where: str, ok: bool) -> None:
        if self.store is not None:
            self.store.log_escalation(where, ok)
