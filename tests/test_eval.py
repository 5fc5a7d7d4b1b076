"""Eval metrics on hand-computed examples, eval and bench through the CLI, and eval compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_desk.contract.tasks import load_task
from slm_desk.data.config import CostsConfig
from slm_desk.learn.metrics import compute, regressions

ROUTE = load_task("route-ticket")
BOOKING = load_task("extract-booking")


def record(
    gold: dict,
    output: dict | None,
    decision: str = "accept",
    valid_first: bool = True,
    escalated: bool = False,
    latency: int = 100,
) -> dict:
    return {
        "gold": gold,
        "output": output,
        "valid": output is not None,
        "valid_first": valid_first and output is not None,
        "decision": decision,
        "escalated": escalated,
        "latency_ms": latency,
        "prompt_tokens": 400,
        "completion_tokens": 10,
    }


def r(gold: str, predicted: str | None, **kw) -> dict:  # type: ignore[no-untyped-def]
    return record({"route": gold}, None if predicted is None else {"route": predicted}, **kw)


def test_label_metrics_match_a_hand_count() -> None:
    records = [
        r("fraud_or_security", "fraud_or_security", decision="review"),  # TP fraud
        r("fraud_or_security", "card_issue", latency=300),  # FN fraud, FP card
        r("card_issue", "card_issue"),  # TP card
        r("card_issue", "card_issue", decision="review", valid_first=False),  # TP card (after retry)
        r("other", None, decision="review", latency=500),  # invalid: counts as wrong
    ]
    m = compute(ROUTE, records, wall_seconds=2.0, costs=CostsConfig())
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(3 / 5)
    card, fraud, other = (m["labels"]["route"][k] for k in ("card_issue", "fraud_or_security", "other"))
    assert card["precision"] == pytest.approx(2 / 3) and card["recall"] == pytest.approx(1.0)
    assert fraud["precision"] == pytest.approx(1.0) and fraud["recall"] == pytest.approx(1 / 2)
    assert fraud["false_negative_rate"] == pytest.approx(1 / 2) and "false_negative_rate" not in card
    assert other["recall"] == 0.0 and other["precision"] is None
    assert m["validity_first_attempt"] == pytest.approx(3 / 5) and m["validity_after_retry"] == pytest.approx(4 / 5)
    assert m["accept_rate"] == pytest.approx(2 / 5) and m["review_rate"] == pytest.approx(3 / 5)
    assert m["accepted_accuracy"] == pytest.approx(1 / 2)  # of the two accepted, the card_issue one is right
    assert m["latency_ms_p50"] == 100 and m["latency_ms_p95"] == pytest.approx(460)
    assert m["throughput_per_s"] == pytest.approx(2.5)


def test_field_exact_match_and_costs() -> None:
    gold = {"people": "4", "date": "Friday", "time": None, "first_name": "Sam", "last_name": None}
    right = dict(gold)
    wrong_name = {**gold, "first_name": "Sammy"}
    records = [record(gold, right), record(gold, wrong_name, escalated=True), record(gold, None, decision="review")]
    costs = CostsConfig(local_per_hour=3.6, escalation_per_1k_input_tokens=1.0, escalation_per_1k_output_tokens=2.0)
    m = compute(BOOKING, records, wall_seconds=10.0, costs=costs)
    assert m["field_exact_match"]["people"] == pytest.approx(2 / 3)
    assert m["field_exact_match"]["first_name"] == pytest.approx(1 / 3)
    cost = m["cost_per_1k"]
    # machine: 10 s at $0.001/s = $0.01; one escalation: 400 in at $0.001 + 10 out at $0.002 = $0.42
    assert cost["cascade"] == pytest.approx((0.01 + 0.42) / 3 * 1000)
    assert cost["always_larger"] == pytest.approx(0.42 * 1000)
    assert cost["saving"] == pytest.approx(1 - 0.43 / 3 / 0.42)


def test_regressions_flag_what_got_worse() -> None:
    a = {"accuracy": 0.8, "latency_ms_p95": 100.0, "labels": {"route": {"fraud": {"false_negative_rate": 0.1}}}}
    b = {"accuracy": 0.7, "latency_ms_p95": 105.0, "labels": {"route": {"fraud": {"false_negative_rate": 0.3}}}}
    found = regressions(a, b)
    assert any(f.startswith("accuracy") for f in found) and not any("latency" in f for f in found)
    assert any("high-risk route=fraud" in f for f in found)
    assert regressions(a, a) == []


@pytest.mark.model
def test_eval_extract_booking_out_of_the_box(cli, tmp_path: Path) -> None:
    result = cli("eval", "extract-booking", "--json", "--limit", "12")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "accuracy",
        "labels",
        "validity_first_attempt",
        "validity_after_retry",
        "field_exact_match",
        "accept_rate",
        "escalation_rate",
        "review_rate",
        "accepted_accuracy",
        "latency_ms_p50",
        "latency_ms_p95",
        "throughput_per_s",
        "cost_per_1k",
    ):
        assert key in report, key
    assert report["n"] == 12 and set(report["field_exact_match"]) == {
        "people",
        "date",
        "time",
        "first_name",
        "last_name",
    }
    first = tmp_path / "a.json"
    first.write_text(result.stdout)
    same = cli("eval", "compare", str(first), str(first))
    assert same.returncode == 0 and "no regressions" in same.stderr
    worse = dict(report, accuracy=(report["accuracy"] or 0) - 0.5, validity_after_retry=-1.0)
    second = tmp_path / "b.json"
    second.write_text(json.dumps(worse))
    flagged = cli("eval", "compare", str(first), str(second))
    assert flagged.returncode == 5 and "REGRESSION  validity_after_retry" in flagged.stdout


@pytest.mark.model
def test_eval_with_concurrency(cli) -> None:
    result = cli("eval", "route-ticket", "--json", "--limit", "6", "--concurrency", "2")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["concurrency"] == 2 and report["n"] == 6


@pytest.mark.model
def test_bench_reports_what_picks_a_model(cli) -> None:
    result = cli("bench", "--task", "route-ticket", "--items", "3", "--json")
    bench = json.loads(result.stdout)
    assert bench["load_seconds"] > 0 and bench["prompt_tokens_per_s"] > bench["generation_tokens_per_s_json_grammar"]
    assert bench["generation_tokens_per_s_free_text"] > 0 and bench["peak_memory_bytes"] > bench["file_bytes"] / 4
    assert bench["items"] == 3 and bench["latency_ms_p95"] >= bench["latency_ms_p50"] > 0
