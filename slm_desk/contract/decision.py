"""Accept, escalate or send to review: the task's risk rules and its calibration applied to one result.

The reasons, in the order they are checked:
1. validation failed after the retry;
2. a label whose risk level always needs a second check (high risk by default);
3. an input unlike everything the answering tier learned from (the head's novelty rule): a person labels it;
4. no calibration profile for this task, version and model, and no --accept-at: never measured, so never
   accepted (`unmeasured` names the command that measures it), unless the task file opts in to accepting valid
   answers unmeasured (`accept_unmeasured = true`), and the reason says that it did;
5. confidence below the threshold for the answer's labels (from calibration, or --accept-at);
6. otherwise accept.
A label with no threshold is never accepted, and a threshold t accepts exactly the confidences >= t, t = 0 included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from slm_desk.contract.calibration import Profile
    from slm_desk.contract.tasks import Task

Decision = Literal["accept", "escalate", "review"]


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    threshold: float | None = None


def decide(
    task: Task,
    output: dict[str, Any] | None,
    errors: list[str],
    confidence: float | None,
    profile: Profile | None = None,
    accept_at: float | None = None,
    can_escalate: bool = False,
    unmeasured: str | None = None,
    unfamiliar: str | None = None,
) -> Verdict:
    not_sure: Decision = "escalate" if can_escalate else "review"
    if errors or output is None:
        return Verdict(not_sure, "validation failed after retry: " + "; ".join(errors or ["no answer"]))
    groups = task.groups(output)
    always = task.always_reviewed(output)
    if always:
        return Verdict("review", f"high-risk answer {', '.join(always)} always needs a second check")
    if unfamiliar:
        return Verdict("review", f"the input is {unfamiliar}")
    if accept_at is not None:
        threshold, source = accept_at, "--accept-at"
    elif profile is not None:
        rules = {g: profile.thresholds.get(g) for g, _ in groups}
        unknown = [g for g, rule in rules.items() if rule is None]
        if unknown:
            return Verdict(not_sure, f"no calibration data for {', '.join(unknown)}")
        supported = {g: rule.threshold for g, rule in rules.items() if rule is not None}
        missing = [g for g, t in supported.items() if t is None]
        shipped = "the profile shipped for this model" if profile.source else ""  # not one measured here
        if shipped and profile.caveat:
            shipped += f"; {profile.caveat}"
        if missing:
            where = f" ({shipped})" if shipped else ""
            return Verdict(not_sure, f"calibration cannot support the precision target for {', '.join(missing)}{where}")
        # a threshold of 0.0 is a real threshold (every answer of the label met its target), never "missing"
        threshold, group = max((t, g) for g, t in supported.items() if t is not None)
        source = f"{group} at {profile.thresholds[group].target:.0%} precision" + (f", {shipped}" if shipped else "")
    elif task.accept_unmeasured:
        return Verdict(
            "accept", "valid; not calibrated, accepted on validity alone (accept_unmeasured in the task file)"
        )
    else:
        return Verdict(not_sure, f"not calibrated: {unmeasured or 'no profile measures this model on this task'}")
    assert threshold is not None
    if confidence is None or confidence < threshold:
        shown = "unknown" if confidence is None else f"{confidence:.3f}"
        return Verdict(not_sure, f"confidence {shown} below the threshold {threshold:.4g} ({source})", threshold)
    return Verdict("accept", f"valid; confidence {confidence:.3f} >= threshold {threshold:.4g} ({source})", threshold)
