"""One protocol for every model that answers a task: a local GGUF through llama.cpp (`backends`), an
OpenAI-compatible server (`served`), the trained head, the escalation target.

The pipeline asks a backend for one completion of a task's messages and gets the text, token counts and, where
the backend can tell, per-field confidence. Everything else (validation, retry, calibration, decision) is the
pipeline's, so the small model, the escalation model and the distillation teacher are judged the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from slm_desk.contract.results import Tokens
from slm_desk.errors import SlmDeskError

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task

Messages = list[dict[str, str]]
OnText = Callable[[str], None]
IsCancelled = Callable[[], bool]


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
    unfamiliar: str | None = None  # why the input is unlike what this tier learned from (then it is not accepted)
    examples: int | None = None  # few-shot turns the prompt held (fewer than retrieved when they did not all fit)


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
