"""The cascade: small model first, the decision policy, then (with consent) the larger model.

`Cascade.run` is what pipe mode and the TUI call for one input. It never raises for a failed escalation: the
item comes back with decision `review` and a reason naming the failure, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from slm_desk.decision import decide
from slm_desk.escalation import EscalationFailed, Escalator
from slm_desk.results import RunResult
from slm_desk.validators import render_template

if TYPE_CHECKING:
    from slm_desk.calibration import Profile
    from slm_desk.runner import TaskRunner


class Cascade:
    def __init__(
        self,
        runner: TaskRunner,
        profile: Profile | None = None,
        accept_at: float | None = None,
        escalator: Escalator | None = None,
        consent: bool = False,
    ) -> None:
        self.runner = runner
        self.task = runner.task
        self.profile = profile
        self.accept_at = accept_at
        self.escalator = escalator
        self.consent = consent

    def run(
        self, text: str, on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None
    ) -> RunResult:
        small = self.runner.run(text, on_text, cancelled)
        return self.judge(small)

    def judge(self, small: RunResult) -> RunResult:
        """Apply calibration and the decision policy to a small-model result; escalate if allowed."""
        raw = small.raw_confidence
        confidence = self.profile.apply(raw) if self.profile is not None and raw is not None else raw
        verdict = decide(
            self.task,
            small.output,
            small.errors,
            confidence,
            self.profile,
            self.accept_at,
            can_escalate=self.escalator is not None,
        )
        result = small.model_copy(
            update={"confidence": confidence, "decision": verdict.decision, "reason": verdict.reason}
        )
        if verdict.decision != "escalate" or self.escalator is None:
            return result
        if not self.consent:
            return result.model_copy(
                update={"reason": f"{verdict.reason}; run with --escalate to send it to {self.escalator.where}"}
            )
        return self.escalate(result)

    def escalate(self, small: RunResult) -> RunResult:
        assert self.escalator is not None
        where = self.escalator.where
        try:
            answer = self.escalator.ask(self.task, small.input)
        except EscalationFailed as exc:
            return small.model_copy(
                update={
                    "decision": "review",
                    "reason": f"{small.reason}; escalation failed: {exc.message}",
                    "escalation": {"to": where, "error": exc.message, "hint": exc.hint},
                }
            )
        info = {
            "to": where,
            "model": answer.model,
            "valid": not answer.errors,
            "errors": answer.errors,
            "attempts": answer.attempts,
            "latency_ms": answer.latency_ms,
            "small_model": small.model,
            "small_output": small.output,
            "small_rejected_output": small.rejected_output,
            "small_confidence": small.confidence,
        }
        if answer.errors or answer.output is None:
            return small.model_copy(
                update={
                    "decision": "review",
                    "escalated": True,
                    "escalation": info,
                    "reason": f"{small.reason}; escalated to {answer.model}, whose answer failed validation too: "
                    + "; ".join(answer.errors),
                }
            )
        review = self.task.always_reviewed(answer.output)
        reason = f"escalated to {answer.model} ({small.reason}); its answer passed validation"
        template = self.task.template
        return small.model_copy(
            update={
                "model": answer.model,
                "output": answer.output,
                "rejected_output": None,
                "valid": True,
                "errors": [],
                "confidence": None,
                "raw_confidence": None,
                "field_confidence": None,
                "decision": "review" if review else "accept",
                "reason": reason
                + (f"; high-risk label {', '.join(review)} always needs a second check" if review else ""),
                "rendered": render_template(template, answer.output) if template else None,
                "escalated": True,
                "escalation": info,
                "latency_ms": small.latency_ms + answer.latency_ms,
            }
        )
