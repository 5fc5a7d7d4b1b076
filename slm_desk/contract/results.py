"""The result of running a task on one input, and the JSON envelope pipe mode prints for it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from slm_desk.contract.decision import Decision


class Tokens(BaseModel):
    prompt: int = 0
    cached: int = Field(0, description="prompt tokens reused from the KV cache (the task prefix)")
    completion: int = 0

    def plus(self, other: Tokens) -> Tokens:
        return Tokens(
            prompt=self.prompt + other.prompt,
            cached=self.cached + other.cached,
            completion=self.completion + other.completion,
        )


class RunResult(BaseModel):
    task: str
    task_version: int
    model: str
    input: str
    output: dict[str, Any] | None = Field(description="the validated answer; null when invalid")
    rejected_output: str | None = Field(None, description="the last invalid answer, for inspection only")
    valid: bool
    errors: list[str]
    confidence: float | None = Field(None, description="calibrated when the task has a calibration profile")
    raw_confidence: float | None = Field(None, description="minimum over fields, before calibration")
    confidence_note: str | None = Field(None, description="why a valid answer has no confidence, when it has none")
    field_confidence: dict[str, float] | None = None
    decision: Decision
    reason: str
    unfamiliar: str | None = Field(
        None, description="why the input is unlike every example the answering head learned from (it goes to review)"
    )
    rendered: str | None = Field(None, description="the task template filled with the output")
    cut: str | None = Field(None, description="how much of a long input the task read (its read_chars), when it cut it")
    examples: int | None = Field(
        None, description="few-shot examples in the model's prompt: as many retrieved ones as fit the context"
    )
    answered_by: Literal["head", "model", "escalation"] = Field(
        "model", description="the tier whose answer this is: trained head, small model, or larger model"
    )
    escalated: bool = False
    escalation: dict[str, Any] | None = Field(None, description="what the larger model was asked and answered")
    attempts: int
    latency_ms: int | None = Field(
        description="this item's wall time, when it was timed alone; null when it was answered in a batch"
    )
    batch_ms_per_item: float | None = Field(
        None, description="a batch's wall time divided by its items (the head answers many inputs at once)"
    )
    tokens: Tokens

    @property
    def ms(self) -> float:
        """Its time: its own when timed alone, else its share of its batch's."""
        return float(self.latency_ms if self.latency_ms is not None else self.batch_ms_per_item or 0.0)

    def envelope(self, **extra: Any) -> dict[str, Any]:
        """What pipe mode prints: everything but the input (scripts already have it)."""
        return {**extra, **self.model_dump(exclude={"input"})}
