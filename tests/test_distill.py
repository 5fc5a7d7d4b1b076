"""Distillation round trip against a real loopback teacher, ending in JSONL that `eval` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_desk.contract.tasks import parse_task
from slm_desk.data.catalog import bundled_model_path
from slm_desk.data.evalset import read_jsonl
from tests.servers import llama_server

pytestmark = pytest.mark.model


RAW = [
    "I was billed twice for invoice INV-311, please fix it",
    "The export button does nothing when I click it",
    "Please send me invoice INV-9 again",
    "How do I change the email on my account?",
    "Our whole team is locked out, this is urgent",
    "Do you ship to Canada?",
]


def test_distill_review_export_and_eval(cli, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(RAW) + "\n")
    model = bundled_model_path()
    assert model is not None
    with llama_server(model, alias="teacher") as base:
        result = cli("distill", "extract-ticket", "--inputs", str(raw), "--teacher", base)
    assert result.returncode == 0, result.stderr
    assert "queued for review" in result.stdout

    items = json.loads(cli("review", "--json", "--task", "extract-ticket").stdout)
    assert [i["input"] for i in items] == RAW  # every answer queued, none kept silently
    flagged = [i for i in items if i["reason"].startswith("FLAGGED")]
    valid = [i for i in items if not i["reason"].startswith("FLAGGED")]
    for item in flagged:  # the teacher's invalid answers must be corrected by a person, never accepted
        assert cli("review", "accept", str(item["id"])).returncode == 2
    for item in valid:
        assert cli("review", "accept", str(item["id"])).returncode == 0
    for item in flagged:
        invoice = "INV-9" if "INV-9" in item["input"] else ("INV-311" if "INV-311" in item["input"] else None)
        fixed = {"issue_type": "billing" if invoice else "other", "invoice_id": invoice, "urgency": "low"}
        assert cli("review", "correct", str(item["id"]), "--output", json.dumps(fixed)).returncode == 0

    out = tmp_path / "distilled"
    exported = cli("distill", "export", "extract-ticket", "--out", str(out), "--examples", "2", "--holdout", "0.34")
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["train"] + summary["heldout"] == len(RAW) and summary["heldout"] == 2
    assert summary["heldout_removed_from_pool"] == 2  # accepted reviews taught the task; the held-out ones no more
    train, held = read_jsonl(out / "train.jsonl"), read_jsonl(out / "heldout.jsonl")
    assert {i["input"] for i in train}.isdisjoint({i["input"] for i in held})
    copy = parse_task((out / "extract-ticket.toml").read_text(), "extract-ticket", "copy")
    assert copy.version == 2 and len(copy.examples) == 5 + 2

    report = cli("eval", "extract-ticket", "--data", str(out / "heldout.jsonl"), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["n"] == 2
