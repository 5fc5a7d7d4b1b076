"""The one answer pipeline: prompt, generate, validate, one corrective retry, confidence, calibration, decision.

Every model that answers a task goes through `Pipeline.answer` with its own backend: the small model, the
escalation model and the distillation teacher. The decision is made here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from slm_desk.contract import prompt
from slm_desk.contract.decision import decide
from slm_desk.contract.results import RunResult, Tokens
from slm_desk.contract.validation import validate_output
from slm_desk.errors import SlmDeskError
from slm_desk.models.confidence import overall
from slm_desk.models.protocol import Backend, BatchBackend, Completion, IsCancelled, OnText

if TYPE_CHECKING:
    from slm_desk.contract.calibration import Profile
    from slm_desk.contract.tasks import Task

MAX_ATTEMPTS = 2
# input text -> the few-shot turns for it, as (input, output JSON text) pairs; None keeps the task's own
Shots = Callable[[str], list[tuple[str, str]] | None]


def no_shots(text: str) -> list[tuple[str, str]]:
    """A fine-tuned model's shots: none, it is prompted as it was trained."""
    return []


class Pipeline:
    """One task on one backend, with the policy that judges its answers."""

    def __init__(
        self,
        task: Task,
        backend: Backend,
        profile: Profile | None = None,
        accept_at: float | None = None,
        can_escalate: bool = False,
        shots: Shots | None = None,
        tier: Literal["head", "model", "escalation"] = "model",
        max_attempts: int = MAX_ATTEMPTS,
        unmeasured: str | None = None,
    ) -> None:
        self.task = task
        self.backend = backend
        self.profile = profile
        self.accept_at = accept_at
        self.can_escalate = can_escalate
        self.shots = shots
        self.tier = tier
        self.max_attempts = max_attempts  # 1 for a deterministic tier (the head): a retry would answer the same
        # without a profile this tier never accepts (unless the task opts in); this says why and what measures it
        self.unmeasured = unmeasured or (
            f"{backend.model} was never measured on {task.name} v{task.version}: `slm-desk calibrate {task.name}` "
            f"measures it on labelled data; to accept its valid answers unmeasured, pass --accept-at P or set "
            "accept_unmeasured = true in the task file"
        )

    def answer(self, text: str, on_text: OnText | None = None, cancelled: IsCancelled | None = None) -> RunResult:
        prompt.check_input(text)
        started = time.perf_counter()
        task = self.task
        whole, (text, cut) = text, task.read(text)
        messages = prompt.task_messages(task, text, self.shots(text) if self.shots else None)
        totals = Tokens()
        output: dict[str, Any] | None = None
        errors, raw, attempts = ["no answer"], "", 0
        completion: Completion | None = None
        generated = task.for_input(text)  # the grammar knows which ids the input holds
        while attempts < self.max_attempts:
            attempts += 1
            completion = self.backend.complete(generated, messages, on_text, cancelled)
            totals = totals.plus(completion.tokens)
            raw = completion.text
            output, errors = validate_output(task, raw, text)
            if completion.finish_reason == "length" and output is None:
                errors = [f"answer was cut off at max_tokens={task.max_tokens}", *errors[1:]]
            if not errors:
                break
            messages = prompt.retry_messages(messages, raw, errors)
            if on_text is not None and attempts < self.max_attempts:
                on_text("\n(rejected; retrying with the errors)\n")
        if completion is not None and completion.fields and (forced := generated.forced_fields()):
            # a value the grammar left no choice in is as sure as the contract that forced it
            completion = dataclasses.replace(completion, fields={**completion.fields, **dict.fromkeys(forced, 1.0)})
        judged = self._judged(text, output, errors, raw, completion, attempts, totals, time.perf_counter() - started)
        return judged.model_copy(update={"input": whole, "cut": cut}) if cut else judged

    def answer_batch(self, texts: list[str]) -> list[RunResult | SlmDeskError]:
        """Many inputs at once through a batch backend (the head), one attempt each; an input the task cannot run
        on comes back as its error, in its place."""
        if not isinstance(self.backend, BatchBackend):
            raise TypeError(f"{self.backend.model} answers one input at a time: call answer()")
        checked: list[str | SlmDeskError] = []
        for text in texts:
            try:
                checked.append(prompt.check_input(text))
            except SlmDeskError as exc:
                checked.append(exc)
        runnable = [t for t in checked if isinstance(t, str)]
        read = [self.task.read(t) for t in runnable]
        started = time.perf_counter()
        completions = self.backend.complete_many(self.task, [r for r, _ in read]) if runnable else []
        each = (time.perf_counter() - started) / max(1, len(runnable))
        answered = iter(
            self._judged(r, *validate_output(self.task, c.text, r), c.text, c, 1, c.tokens, each, True).model_copy(
                update={"input": t, "cut": cut}
            )
            for t, (r, cut), c in zip(runnable, read, completions, strict=True)
        )
        return [item if isinstance(item, SlmDeskError) else next(answered) for item in checked]

    def _judged(
        self,
        text: str,
        output: dict[str, Any] | None,
        errors: list[str],
        raw: str,
        completion: Completion | None,
        attempts: int,
        totals: Tokens,
        seconds: float,
        batched: bool = False,
    ) -> RunResult:
        task = self.task
        valid = not errors
        fields = completion.fields if valid and completion is not None else None
        raw_confidence = overall(fields) if fields else None
        confidence = raw_confidence
        if self.profile is not None and raw_confidence is not None:
            confidence = self.profile.apply(raw_confidence)
        verdict = decide(
            task,
            output if valid else None,
            errors,
            confidence,
            self.profile,
            self.accept_at,
            self.can_escalate,
            self.unmeasured,
            completion.unfamiliar if valid and completion is not None else None,
        )
        note = completion.note if valid and completion is not None and fields is None else None
        return RunResult(
            task=task.name,
            task_version=task.version,
            model=completion.model if completion is not None else self.backend.model,
            input=text,
            output=output if valid else None,
            rejected_output=None if valid else raw,
            valid=valid,
            errors=errors,
            confidence=confidence,
            raw_confidence=raw_confidence,
            confidence_note=note,
            field_confidence=fields,
            decision=verdict.decision,
            reason=verdict.reason,
            unfamiliar=completion.unfamiliar if completion is not None else None,
            examples=completion.examples if completion is not None else None,
            rendered=task.render(output) if valid and output else None,
            answered_by=self.tier,
            attempts=attempts,
            latency_ms=None if batched else round(seconds * 1000),
            batch_ms_per_item=round(seconds * 1000, 3) if batched else None,
            tokens=totals,
        )
