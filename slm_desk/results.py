"""The result of running a task on one input, and the JSON envelope pipe mode prints for it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from slm_desk.decision import Decision


class Tokens(BaseModel):
    prompt: int = 0
    cached: int = Field(0, description="prompt tokens reused from the KV cache (the task prefix)")
    completion: int = 0


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
    field_confidence: dict[str, float] | None = None
    decision: Decision
    reason: str
    rendered: str | None = Field(None, description="the task template filled with the output")
    escalated: bool = False
    escalation: dict[str, Any] | None = Field(None, description="what the larger model was asked and answered")
    attempts: int
    latency_ms: int
    tokens: Tokens

    def envelope(self, **extra: Any) -> dict[str, Any]:
        """What pipe mode prints: everything but the input (scripts already have it)."""
        return {**extra, **self.model_dump(exclude={"input"})}
