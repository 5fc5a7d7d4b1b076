"""The desk: one place that holds the config and the store, and builds cascades over the shared backends.

Pipe mode and the TUI are both thin faces over it. Local models load once per process and stay loaded (see
`backends.local`), so switching tasks keeps the model warm and two screens share one model and its lock.
"""

from __future__ import annotations

from slm_desk import backends, locations
from slm_desk.backends import Backend
from slm_desk.cascade import Cascade
from slm_desk.config import Config, RuntimeConfig, load_config
from slm_desk.escalation import Budget, escalation_backend, is_loopback
from slm_desk.pipeline import Pipeline
from slm_desk.store import Store
from slm_desk.tasks import Task, load_task


class Desk:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(locations.history_db())

    def reload_config(self) -> None:
        self.config = load_config()

    def backend(self, model_id: str | None = None, runtime: RuntimeConfig | None = None, replica: int = 0) -> Backend:
        """The small model: the local GGUF of `model_id` (default [models] small), or [runtime] backend's server."""
        return backends.small_model(model_id, runtime or self.config.runtime, self.config.models.small, replica)

    def escalation_leaves_machine(self) -> bool:
        """True when escalating would send text to another machine (the TUI asks first)."""
        esc = self.config.escalation
        return bool(esc.enabled and not esc.local_model and esc.base_url and not is_loopback(esc.base_url))

    def pipeline(
        self, task: str | Task, backend: Backend, accept_at: float | None = None, calibrated: bool = True
    ) -> Pipeline:
        """The small-model tier for `task` on `backend`, with its calibration profile unless `calibrated` is off."""
        task = load_task(task) if isinstance(task, str) else task
        profile = self.store.calibration(task.name, task.version, backend.model) if calibrated else None
        escalation = self.config.escalation
        return Pipeline(task, backend, profile, accept_at, can_escalate=escalation.enabled)

    def cascade(
        self,
        task: str | Task,
        model_id: str | None = None,
        runtime: RuntimeConfig | None = None,
        accept_at: float | None = None,
        consent: bool = False,
        replica: int = 0,
    ) -> Cascade:
        """Every tier for `task`: the small model of `model_id`, then the configured escalation target."""
        task = load_task(task) if isinstance(task, str) else task
        runtime = runtime or self.config.runtime
        small = self.pipeline(task, self.backend(model_id, runtime, replica), accept_at)
        larger = escalation_backend(self.config.escalation, runtime)
        return Cascade(
            small,
            escalation=Pipeline(task, larger, tier="escalation") if larger is not None else None,
            budget=Budget(self.config.escalation, self.store),
            consent=consent,
        )

    def close(self) -> None:
        self.store.close()
