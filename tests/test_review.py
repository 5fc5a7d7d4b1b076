"""The review queue and the eval set it feeds, through the CLI, on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_desk.data.evalset import read_jsonl


def pending(cli) -> list[dict]:
    return json.loads(cli("review", "--json").stdout)


@pytest.mark.model
def test_review_accept_correct_reject_and_export(cli, user_task, slm_home: Path, tmp_path: Path) -> None:
    user_task("forced-fail")
    cli("run", "forced-fail", "--input", "1234 5678 9999")  # invalid: queued, eval set placeholder
    cli("run", "route-ticket", "--input", "Someone stole my card and used it")  # high-risk or valid
    cli("run", "extract-ticket", "--accept-at", "0.9999", "--input", "Refund INV-4 please")  # below threshold
    items = pending(cli)
    assert len(items) >= 2
    by_task = {item["task"]: item for item in items}
    assert "validation failed after retry" in by_task["forced-fail"]["reason"]

    bad = cli("review", "correct", str(by_task["forced-fail"]["id"]), "--output", '{"name": "Maria"}')
    assert bad.returncode == 2 and "does not appear in the input" in bad.stderr  # corrections obey the contract
    nothing = cli("review", "accept", str(by_task["forced-fail"]["id"]))
    assert nothing.returncode == 2 and "no valid answer" in nothing.stderr
    assert cli("review", "reject", str(by_task["forced-fail"]["id"])).returncode == 0

    ticket = by_task["extract-ticket"]
    fixed = '{"issue_type": "billing", "invoice_id": "INV-4", "urgency": "medium"}'
    assert cli("review", "correct", str(ticket["id"]), "--output", fixed).returncode == 0
    again = cli("review", "accept", str(ticket["id"]))
    assert again.returncode == 2 and "already corrected" in again.stderr
    assert {i["task"] for i in pending(cli)} <= {"route-ticket"}

    export = cli("evalset", "export", "extract-ticket")
    out = tmp_path / "ticket.jsonl"
    out.write_text(export.stdout)
    assert read_jsonl(out) == [{"input": "Refund INV-4 please", "output": json.loads(fixed)}]
    rejected = cli("evalset", "export", "forced-fail")
    assert rejected.stdout == "" and "0 examples written" in rejected.stderr


def test_exported_set_feeds_calibrate(cli, tmp_path: Path) -> None:
    data = tmp_path / "tiny.jsonl"
    data.write_text('{"input": "x", "output": {"route": "other"}}\n' * 3)
    result = cli("calibrate", "route-ticket", "--data", str(data))
    assert result.returncode == 2 and "too few to calibrate" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input": "x"}\n')
    result = cli("calibrate", "route-ticket", "--data", str(broken))
    assert result.returncode == 2 and "broken.jsonl:1" in result.stderr
