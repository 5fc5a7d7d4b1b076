"""Run a task on one input: prompt, constrained generation, validation, one corrective retry, decision."""

from __future__ import annotations

import time
from collections.abc import Callable

from slm_desk import prompt
from slm_desk.confidence import field_confidences, overall
from slm_desk.decision import decide
from slm_desk.errors import UsageError
from slm_desk.results import RunResult, Tokens
from slm_desk.runtime import Engine, Generation
from slm_desk.tasks import Task
from slm_desk.validation import validate_output
from slm_desk.validators import render_template

MAX_ATTEMPTS = 2


class Cancelled(Exception):
    """The caller asked to stop mid-generation (Esc in the TUI)."""


def check_input(text: str) -> str:
    """Refuse input a task cannot meaningfully run on; return it unchanged otherwise."""
    if not text.strip():
        raise UsageError("the input is empty", "pass text on stdin or with --input TEXT")
    if "\x00" in text or sum(not (c.isprintable() or c.isspace()) for c in text) > max(2, len(text) // 100):
        raise UsageError("the input looks like binary data, not text", "pass plain UTF-8 text")
    return text


class TaskRunner:
    """Runs one task on one loaded model; reuse it across inputs so the prompt prefix stays cached."""

    def __init__(self, task: Task, engine: Engine) -> None:
        self.task = task
        self.engine = engine

    def run(
        self,
        text: str,
        on_text: Callable[[str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> RunResult:
        check_input(text)
        started = time.perf_counter()
        task = self.task
        messages = prompt.task_messages(task, text)
        totals = Tokens()
        output, errors, raw = None, ["no answer"], ""
        generation: Generation | None = None
        attempts = 0
        while attempts < MAX_ATTEMPTS:
            attempts += 1
            generation = self._generate(messages, on_text, cancelled)
            totals = Tokens(
                prompt=totals.prompt + generation.prompt_tokens,
                cached=totals.cached + generation.cached_tokens,
                completion=totals.completion + generation.completion_tokens,
            )
            raw = generation.text
            output, errors = validate_output(task, raw, text)
            if generation.finish_reason == "length" and output is None:
                errors = [f"answer was cut off at max_tokens={task.max_tokens}", *errors[1:]]
            if not errors:
                break
            messages = prompt.retry_messages(task, text, raw, errors)
            if on_text is not None and attempts < MAX_ATTEMPTS:
                on_text("\n(rejected; retrying with the errors) ")
        valid = not errors
        fields = field_confidences(task, generation, self.engine) if generation and output is not None else None
        confidence = overall(fields) if fields else None
        verdict = decide(task, output if valid else None, errors, confidence)
        return RunResult(
            task=task.name,
            task_version=task.version,
            model=self.engine.model.id,
            input=text,
            output=output if valid else None,
            rejected_output=None if valid else raw,
            valid=valid,
            errors=errors,
            confidence=confidence,
            raw_confidence=confidence,
            field_confidence=fields,
            decision=verdict.decision,
            reason=verdict.reason,
            rendered=render_template(task.template, output) if valid and task.template and output else None,
            attempts=attempts,
            latency_ms=round((time.perf_counter() - started) * 1000),
            tokens=totals,
        )

    def _generate(
        self,
        messages: list[dict[str, str]],
        on_text: Callable[[str], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> Generation:
        tokens = self.engine.tokenize(self.engine.render(messages))
        generation = self.engine.generate(tokens, self.task.output_schema, self.task.max_tokens, on_text, cancelled)
        if generation.finish_reason == "cancelled":
            raise Cancelled()
        return generation
