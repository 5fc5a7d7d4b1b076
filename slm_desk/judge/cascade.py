"""The cascade chooses tiers: the trained head, the small model, then (with consent) the larger model.

Each tier is a `Pipeline` that makes its own decision; the cascade only decides which tier's answer stands. The
head hands an answer on to the small model only where `train` measured the small model more accurate (the
policy's confidence bands); otherwise the head's answer stands, for review or escalation as it decided.
It never raises for a failed escalation: the item comes back with decision `review` and a reason naming the
failure, so nothing is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_desk.contract.results import RunResult
from slm_desk.errors import SlmDeskError
from slm_desk.models.protocol import IsCancelled, OnText

if TYPE_CHECKING:
    from slm_desk.judge.pipeline import Pipeline
    from slm_desk.judge.tiers import TierPolicy
    from slm_desk.models.escalation import Budget


class Cascade:
    def __init__(
        self,
        small: Pipeline,
        escalation: Pipeline | None = None,
        budget: Budget | None = None,
        consent: bool = False,
        head: Pipeline | None = None,
        policy: TierPolicy | None = None,
    ) -> None:
        self.head = head
        self.policy = policy  # where the head hands on to the small model: measured by `slm-desk train`
        self.small = small
        self.task = small.task
        self.escalation = escalation
        self.budget = budget
        self.consent = consent

    @property
    def escalates_to(self) -> str | None:
        return self.escalation.backend.where if self.escalation is not None else None

    def run(self, text: str, on_text: OnText | None = None, cancelled: IsCancelled | None = None) -> RunResult:
        if self.head is None:
            return self.finish(self.small.answer(text, on_text, cancelled))
        return self.after_head(self.head.answer(text, on_text, cancelled), on_text, cancelled)

    def first_answers(self, texts: list[str]) -> list[RunResult | SlmDeskError] | None:
        """The head's answers to a batch, at once (None without a head): `after_head` takes each further. A batch
        the head accepts whole never waits for a model."""
        return self.head.answer_batch(texts) if self.head is not None else None

    def hand_on(self, quick: RunResult) -> tuple[bool, str]:
        """Whether the head's answer goes to the small model, and the rule that says so."""
        if quick.decision == "accept":
            return False, "accepted"
        if quick.output is not None and self.task.always_reviewed(quick.output):
            return False, "its label goes to a person whatever a model says"
        if quick.unfamiliar:
            return False, "what the head never saw goes to a person, who can teach it"
        if not quick.valid:
            return True, "the head's answer failed validation"
        model = self.small.backend.model
        if self.policy is None or not self.policy.model:
            if self.policy is not None and self.policy.note:
                return False, self.policy.note
            return False, f"{model} was never measured against the head (slm-desk train --compare N measures it)"
        if self.policy.model != model:
            return False, f"train measured {self.policy.model} as the next tier, not {model}"
        band = self.policy.band(quick.confidence)
        return band.defer, band.why(model)

    def after_head(
        self, quick: RunResult, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> RunResult:
        onward, why = self.hand_on(quick)
        if not onward:
            if quick.decision == "accept":
                return quick
            return self.finish(quick.model_copy(update={"reason": f"{quick.reason}; the head's answer stands: {why}"}))
        if on_text is not None:
            on_text("\n(the head is not sure; asking the model)\n")
        small = self.small.answer(quick.input, on_text, cancelled)
        return self.finish(small.model_copy(update={"reason": f"handed on by the head ({why}); {small.reason}"}))

    def finish(self, result: RunResult) -> RunResult:
        """Escalate an answer its tier could not accept, when the user consented; say how otherwise."""
        if result.decision != "escalate" or self.escalation is None:
            return result
        if not self.consent:
            hint = f"{result.reason}; run with --escalate to send it to {self.escalates_to}"
            return result.model_copy(update={"reason": hint})
        return self.escalate(result)

    def escalate(self, small: RunResult) -> RunResult:
        """The larger model's answer when it is valid; otherwise the small one's, for review, with the reason."""
        assert self.escalation is not None
        where = self.escalation.backend.where
        try:
            if self.budget is not None:
                self.budget.check()
            answered = False
            try:
                big = self.escalation.answer(small.input)
                answered = True
            finally:  # every call counts against the budget, answered or not
                if self.budget is not None:
                    self.budget.spent(where, ok=answered)
        except SlmDeskError as exc:
            return small.model_copy(
                update={
                    "decision": "review",
                    "reason": f"{small.reason}; escalation failed: {exc.message}",
                    "escalation": {"to": where, "error": exc.message, "hint": exc.hint},
                }
            )
        info: dict[str, Any] = {
            "to": where,
            "model": big.model,
            "valid": big.valid,
            "errors": big.errors,
            "attempts": big.attempts,
            "latency_ms": big.latency_ms,
            "small_model": small.model,
            "small_output": small.output,
            "small_rejected_output": small.rejected_output,
            "small_confidence": small.confidence,
        }
        if not big.valid:
            return small.model_copy(
                update={
                    "decision": "review",
                    "escalated": True,
                    "escalation": info,
                    "reason": f"{small.reason}; escalated to {big.model}, whose answer failed validation too: "
                    + "; ".join(big.errors),
                }
            )
        return big.model_copy(
            update={
                "reason": f"escalated to {big.model} ({small.reason}); its answer passed validation; {big.reason}",
                "escalated": True,
                "escalation": info,
                "latency_ms": round(small.ms + big.ms),
                "batch_ms_per_item": None,
                "tokens": small.tokens.plus(big.tokens),
            }
        )
