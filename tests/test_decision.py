"""The decision policy, on a real task and hand-made calibration profiles."""

from __future__ import annotations

from slm_desk.calibration import Profile, Threshold
from slm_desk.decision import decide
from slm_desk.tasks import load_task

ROUTE = load_task("route-ticket")


def profile(thresholds: dict[str, float | None]) -> Profile:
    return Profile(
        task="route-ticket",
        task_version=1,
        model="m",
        n_examples=0,
        n_valid=0,
        accuracy=0,
        field_accuracy={},
        reliability_raw=[],
        reliability_calibrated=[],
        ece_raw=0,
        ece_calibrated=0,
        brier_raw=0,
        brier_calibrated=0,
        heldout={},
        map_x=[],
        map_y=[],
        thresholds={
            g: Threshold(risk="low", target=0.8, always_review=False, n=50, threshold=t, note="")
            for g, t in thresholds.items()
        },
    )


def test_invalid_goes_to_review_or_escalation() -> None:
    assert decide(ROUTE, None, ["bad"], None).decision == "review"
    verdict = decide(ROUTE, None, ["bad"], None, can_escalate=True)
    assert verdict.decision == "escalate" and verdict.reason == "validation failed after retry: bad"


def test_high_risk_label_always_reviewed_even_when_confident() -> None:
    verdict = decide(ROUTE, {"route": "fraud_or_security"}, [], 0.999, profile({}), accept_at=0.1, can_escalate=True)
    assert verdict.decision == "review" and "route=fraud_or_security always needs a second check" in verdict.reason


def test_thresholds_from_calibration_per_label() -> None:
    p = profile({"route=card_issue": 0.7, "route=other": None})
    assert decide(ROUTE, {"route": "card_issue"}, [], 0.75, p).decision == "accept"
    low = decide(ROUTE, {"route": "card_issue"}, [], 0.65, p, can_escalate=True)
    assert low.decision == "escalate" and "below the threshold 0.7 (route=card_issue at 80% precision)" in low.reason
    unsupported = decide(ROUTE, {"route": "other"}, [], 0.99, p)
    assert unsupported.decision == "review" and "cannot support" in unsupported.reason


def test_accept_at_overrides_calibration() -> None:
    p = profile({"route=card_issue": 0.7})
    assert decide(ROUTE, {"route": "card_issue"}, [], 0.75, p, accept_at=0.9).decision == "review"
    assert decide(ROUTE, {"route": "card_issue"}, [], 0.95, p, accept_at=0.9).decision == "accept"


def test_uncalibrated_task_accepts_on_validity_and_says_so() -> None:
    verdict = decide(ROUTE, {"route": "card_issue"}, [], 0.2)
    assert verdict.decision == "accept" and "not calibrated" in verdict.reason
