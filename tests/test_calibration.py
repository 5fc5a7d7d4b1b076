"""Calibration statistics, and `slm-desk calibrate` on 200 labelled banking77 examples with the bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slm_desk.contract.calibration import choose_threshold, ece, error_upper_bound, fit_map, reliability


def test_clopper_pearson_upper_bound() -> None:
    assert error_upper_bound(0, 30) == pytest.approx(1 - 0.05 ** (1 / 30))  # the exact zero-error case
    assert error_upper_bound(5, 100) > 0.05 and error_upper_bound(5, 1000) < error_upper_bound(5, 100)


def test_threshold_keeps_the_upper_bound_within_target() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 2000)
    correct = rng.uniform(0, 1, 2000) < conf  # perfectly calibrated
    threshold, stats = choose_threshold(conf, correct, target=0.9)
    assert threshold is not None and stats["error_upper_bound"] <= 0.1
    accepted = conf >= threshold
    assert 1 - correct[accepted].mean() <= 0.1
    assert choose_threshold(conf[:10], correct[:10], target=0.99)[0] is None  # too little data: says so


def test_ece_and_recalibration_on_an_overconfident_model() -> None:
    rng = np.random.default_rng(2)
    true_p = rng.uniform(0, 1, 4000)
    correct = rng.uniform(0, 1, 4000) < true_p
    overconfident = np.sqrt(true_p)  # says 0.9 when it is right 81 % of the time
    xs, ys = fit_map(overconfident[:3000], correct[:3000])
    fixed = np.interp(overconfident[3000:], xs, ys)
    assert ece(fixed, correct[3000:]) < ece(overconfident[3000:], correct[3000:]) / 2
    bins = reliability(overconfident, correct)
    assert len(bins) == 10 and sum(b.count for b in bins) == 4000


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One real calibration run of route-ticket on 200 built-in examples, shared by the tests below."""
    import os
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("calibrated-home")
    done = subprocess.run(
        [sys.executable, "-m", "slm_desk", "calibrate", "route-ticket", "--limit", "200", "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "SLM_DESK_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), home


@pytest.mark.model
def test_calibrate_json_reports_bins_ece_brier_and_thresholds(calibrated) -> None:
    report, _ = calibrated
    assert report["n_examples"] == 200 and report["n_valid"] > 150
    assert (
        len(report["reliability_raw"]) == 10 and sum(b["count"] for b in report["reliability_raw"]) == report["n_valid"]
    )
    for key in ("ece_raw", "ece_calibrated", "brier_raw", "brier_calibrated"):
        assert 0.0 <= report[key] <= 1.0
    routes = [
        "card_issue",
        "payments_and_transfers",
        "account_access",
        "fees_and_charges",
        "fraud_or_security",
        "other",
    ]
    assert set(report["thresholds"]) == {f"route={r}" for r in routes}
    fraud = report["thresholds"]["route=fraud_or_security"]
    assert fraud["risk"] == "high" and fraud["target"] == 0.97 and fraud["always_review"]
    for t in report["thresholds"].values():
        assert t["threshold"] is not None or "cannot support" in t["note"] or t["always_review"]
        if t["threshold"] is not None:
            assert t["error_upper_bound"] <= 1 - t["target"]


@pytest.mark.model
def test_recalibration_is_no_worse_on_held_out_data(calibrated) -> None:
    report, _ = calibrated
    held = report["heldout"]
    assert held["n"] >= 40
    assert held["ece_calibrated"] <= held["ece_raw"]
    assert held["brier_calibrated"] <= held["brier_raw"] + 0.01


@pytest.mark.model
def test_run_applies_the_stored_profile(calibrated, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _, home = calibrated
    monkeypatch.setenv("SLM_DESK_HOME", str(home))
    result = cli("run", "route-ticket", "--input", "How do I top up my account by bank transfer?")
    envelope = result.envelopes[0]
    assert "not calibrated" not in envelope["reason"]
    assert envelope["raw_confidence"] is not None and envelope["confidence"] is not None
    assert envelope["confidence"] != envelope["raw_confidence"] or envelope["decision"] == "review"
