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
    answered_by: Literal["head", "model", "escalation"] = Field(
        "model", description="the tier whose answer this is: trained head, small model, or larger model"
    )
    escalated: bool = False
    escalation: dict[str, Any] | None = Field(None, description="what the larger model was asked and answered")
    attempts: int
    latency_ms: int
    tokens: Tokens

    def envelope(self, **extra: Any) -> dict[str, Any]:
        """What pipe mode prints: everything but the input (scripts already have it)."""
        return {**extra, **self.model_dump(exclude={"input"})}
