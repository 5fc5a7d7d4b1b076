"""The decision policy, on a real task and hand-made calibration profiles."""

from __future__ import annotations

from slm_desk.contract.calibration import Profile, Threshold
from slm_desk.contract.decision import decide
from slm_desk.contract.tasks import load_task

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


def test_an_uncalibrated_answer_goes_to_review_and_names_what_measures_it() -> None:
    verdict = decide(ROUTE, {"route": "card_issue"}, [], 0.99, unmeasured="run `slm-desk calibrate route-ticket`")
    assert verdict.decision == "review" and verdict.reason == "not calibrated: run `slm-desk calibrate route-ticket`"
    opted = decide(ROUTE.model_copy(update={"accept_unmeasured": True}), {"route": "card_issue"}, [], 0.2)
    assert opted.decision == "accept" and "accept_unmeasured in the task file" in opted.reason


# -- the laws of the rule, for every threshold including 0.0 (the bug that sent the surest answers onwards) -------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from slm_desk.contract.calibration import choose_threshold, error_upper_bound  # noqa: E402

LOW_ROUTES = ["card_issue", "payments_and_transfers", "fees_and_charges", "other"]
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
RULE_WORDS = (
    "validation failed",
    "always needs a second check",
    "no calibration data",
    "cannot support",
    "not calibrated:",
    "accepted on validity alone (accept_unmeasured in the task file)",
    "below the threshold",
    ">= threshold",
)


@given(st.sampled_from(LOW_ROUTES), unit, unit, st.booleans())
def test_a_threshold_accepts_exactly_the_confidences_at_or_above_it(route, t, confidence, escalate) -> None:
    verdict = decide(ROUTE, {"route": route}, [], confidence, profile({f"route={route}": t}), can_escalate=escalate)
    assert (verdict.decision == "accept") == (confidence >= t)
    assert verdict.decision in ("accept", "escalate" if escalate else "review")
    assert verdict.threshold == t


@given(st.sampled_from(LOW_ROUTES), st.one_of(st.none(), unit), st.one_of(st.none(), unit))
def test_a_label_without_a_threshold_is_never_accepted(route, confidence, other) -> None:
    thresholds = {"route=other" if route != "other" else "route=card_issue": other}
    absent = decide(ROUTE, {"route": route}, [], confidence, profile(thresholds))
    assert absent.decision == "review" and f"no calibration data for route={route}" in absent.reason
    unsupported = decide(ROUTE, {"route": route}, [], confidence, profile({**thresholds, f"route={route}": None}))
    assert unsupported.decision == "review" and "cannot support" in unsupported.reason


@given(st.one_of(st.none(), unit), st.one_of(st.none(), unit), st.booleans())
def test_high_risk_is_always_reviewed(confidence, accept_at, escalate) -> None:
    p = profile({"route=fraud_or_security": 0.0})
    for chosen in (p, None):
        verdict = decide(ROUTE, {"route": "fraud_or_security"}, [], confidence, chosen, accept_at, escalate)
        assert verdict.decision == "review" and "always needs a second check" in verdict.reason


@given(
    st.sampled_from([*LOW_ROUTES, "fraud_or_security", "account_access"]),
    st.one_of(st.none(), unit),
    st.one_of(st.none(), unit),
    st.one_of(st.none(), unit),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.just("a taught task's tiers must be calibrated")),
    st.booleans(),
)
def test_the_reason_always_names_the_rule_that_decided(
    route, confidence, t, accept_at, valid, with_profile, unmeasured, opted_in
) -> None:
    output = {"route": route} if valid else None
    chosen = profile({f"route={route}": t}) if with_profile else None
    task = ROUTE.model_copy(update={"accept_unmeasured": opted_in})
    verdict = decide(task, output, [] if valid else ["bad"], confidence, chosen, accept_at, unmeasured=unmeasured)
    named = [w for w in RULE_WORDS if w in verdict.reason]
    assert len(named) == 1, verdict.reason
    accepting = (">= threshold", "accepted on validity alone (accept_unmeasured in the task file)")
    assert (verdict.decision == "accept") == (named[0] in accepting)


@given(
    st.sampled_from([*LOW_ROUTES, "fraud_or_security", "account_access"]),
    st.one_of(st.none(), unit),
    st.one_of(st.none(), st.text(max_size=20)),
    st.booleans(),
    st.booleans(),
)
def test_nothing_is_accepted_without_a_profile_unless_the_user_opted_in(
    route, confidence, unmeasured, escalate, opted_in
) -> None:
    """The law the seed promises: an answer nobody measured is never accepted automatically. Without a profile and
    without --accept-at, only a task file that says accept_unmeasured = true accepts (high risk still reviewed)."""
    task = ROUTE.model_copy(update={"accept_unmeasured": opted_in})
    verdict = decide(task, {"route": route}, [], confidence, None, None, escalate, unmeasured=unmeasured)
    assert (verdict.decision == "accept") == (opted_in and route != "fraud_or_security")
    if not opted_in and route != "fraud_or_security":
        assert verdict.decision == ("escalate" if escalate else "review") and "not calibrated" in verdict.reason


@given(
    st.lists(st.tuples(unit, st.booleans()), min_size=1, max_size=60),
    st.floats(min_value=0.51, max_value=0.99),
)
def test_the_chosen_threshold_is_the_lowest_that_keeps_its_promise(samples, target) -> None:
    import numpy as np

    conf = np.array([c for c, _ in samples])
    correct = np.array([ok for _, ok in samples], dtype=bool)
    threshold, stats = choose_threshold(conf, correct, target)

    def keeps(t: float) -> bool:
        accepted = conf >= t
        return error_upper_bound(int((~correct[accepted]).sum()), int(accepted.sum())) <= 1 - target

    candidates = sorted(set(conf.tolist()))
    if threshold is None:
        assert not any(keeps(t) for t in candidates)
        return
    assert keeps(threshold) and stats["accepted"] == int((conf >= threshold).sum())
    assert not any(keeps(t) for t in candidates if t < threshold)
