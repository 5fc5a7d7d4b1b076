"""The desk: one place that holds the config, the store and the loaded models, and builds cascades.

Pipe mode and the TUI are both thin faces over it. Models load once and stay loaded, keyed by id and runtime
settings, so switching tasks keeps the model warm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slm_desk import calibration, locations
from slm_desk.cascade import Cascade
from slm_desk.catalog import resolve_model
from slm_desk.config import Config, RuntimeConfig, load_config
from slm_desk.escalation import Escalator, is_loopback, make_escalator
from slm_desk.store import Store
from slm_desk.tasks import Task, load_task

if TYPE_CHECKING:
    from slm_desk.runtime import Engine


class Desk:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(locations.history_db())
        self._engines: dict[tuple[str, RuntimeConfig], Engine] = {}

    def reload_config(self) -> None:
        self.config = load_config()

    def engine(self, model_id: str | None = None, runtime: RuntimeConfig | None = None) -> Engine:
        from slm_desk.runtime import Engine

        model = resolve_model(model_id or self.config.models.small)
        runtime = runtime or self.config.runtime
        key = (model.id, runtime)
        if key not in self._engines:
            self._engines[key] = Engine(model, runtime)
        return self._engines[key]

    def escalator(self, runtime: RuntimeConfig | None = None) -> Escalator | None:
        return make_escalator(self.config.escalation, self.store, runtime or self.config.runtime)

    def escalation_leaves_machine(self) -> bool:
        """True when escalating would send text to another machine (the TUI asks first)."""
        esc = self.config.escalation
        return bool(esc.enabled and not esc.local_model and esc.base_url and not is_loopback(esc.base_url))

    def cascade(
        self,
        task: str | Task,
        model_id: str | None = None,
        runtime: RuntimeConfig | None = None,
        accept_at: float | None = None,
        consent: bool = False,
        engine: Engine | None = None,
    ) -> Cascade:
        """A cascade for `task` on the cached engine of `model_id`, or on `engine` when given."""
        from slm_desk.runner import TaskRunner

        task = load_task(task) if isinstance(task, str) else task
        engine = engine or self.engine(model_id, runtime)
        return Cascade(
            TaskRunner(task, engine),
            profile=calibration.load(self.store, task.name, task.version, engine.model.id),
            accept_at=accept_at,
            escalator=self.escalator(runtime),
            consent=consent,
        )

    def close(self) -> None:
        self.store.close()
