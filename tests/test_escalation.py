"""Escalation to a real OpenAI-compatible server on 127.0.0.1 (llama-cpp-python's own, serving a GGUF)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_desk.data.catalog import bundled_model_path
from tests.conftest import INVOICE_TICKET
from tests.servers import BAD_BODIES, llama_server, misbehaving_server, mute_server

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def larger() -> Iterator[str]:
    model = bundled_model_path()
    assert model is not None
    with llama_server(model) as base:
        yield base


def configure(home: Path, **values: object) -> None:
    lines = ["[escalation]", "enabled = true", 'model = "larger"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text("\n".join(lines) + "\n")


def queue(home: Path) -> list[tuple]:
    db = sqlite3.connect(home / "data" / "history.sqlite3")
    return db.execute("SELECT task, input, status FROM review ORDER BY id").fetchall()


def test_below_threshold_is_escalated_and_accepted_only_where_measured(cli, slm_home: Path, larger: str) -> None:
    configure(slm_home, base_url=larger)
    result = cli("run", "extract-ticket", "--accept-at", "0.9999", "--escalate", "--input", INVOICE_TICKET)
    [envelope] = result.envelopes
    assert envelope["escalated"] is True and envelope["model"] == "larger" and envelope["answered_by"] == "escalation"
    assert envelope["output"]["invoice_id"] == "INV-8821"
    assert "below the threshold 0.9999" in envelope["reason"] and "passed validation" in envelope["reason"]
    # the larger model was never measured on this task: its valid answer goes to a person, who is told why
    assert envelope["decision"] == "review" and result.returncode == 4, envelope["reason"]
    assert "`slm-desk calibrate extract-ticket --escalation` measures it" in envelope["reason"]
    assert envelope["escalation"]["small_model"] == "smollm2-135m" and envelope["escalation"]["valid"]
    db = sqlite3.connect(slm_home / "data" / "history.sqlite3")
    assert db.execute("SELECT label, source FROM evalset").fetchall() == [("teacher", "escalation")]

    # a task file that opts in accepts the larger model's valid answers unmeasured, and says so
    builtin_text = cli("tasks", "show", "extract-ticket").stdout
    (slm_home / "config" / "tasks").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "tasks" / "extract-ticket.toml").write_text("accept_unmeasured = true\n" + builtin_text)
    opted = cli("run", "extract-ticket", "--accept-at", "0.9999", "--escalate", "--input", INVOICE_TICKET)
    [envelope] = opted.envelopes
    assert envelope["decision"] == "accept" and opted.returncode == 0, envelope["reason"]
    assert "accept_unmeasured in the task file" in envelope["reason"]


def test_without_consent_the_decision_says_escalate(cli, slm_home: Path, larger: str) -> None:
    configure(slm_home, base_url=larger)
    result = cli("run", "extract-ticket", "--accept-at", "0.9999", "--input", INVOICE_TICKET)
    [envelope] = result.envelopes
    assert envelope["decision"] == "escalate" and not envelope["escalated"] and result.returncode == 4
    assert "run with --escalate" in envelope["reason"]


def test_larger_models_invalid_answer_goes_to_review(cli, slm_home: Path, larger: str, user_task) -> None:
    configure(slm_home, base_url=larger)
    user_task("forced-fail")
    result = cli("run", "forced-fail", "--escalate", "--input", "1234 5678 9999")
    [envelope] = result.envelopes
    assert envelope["decision"] == "review" and envelope["escalated"] and result.returncode == 3
    assert "failed validation too" in envelope["reason"]
    assert queue(slm_home) == [("forced-fail", "1234 5678 9999", "pending")]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"base_url": "http://127.0.0.1:9/v1", "retries": 1}, "unreachable"),
        ({"api_key_env": "SLM_DESK_TEST_MISSING_KEY"}, "SLM_DESK_TEST_MISSING_KEY is not set"),
    ],
)
def test_failures_give_a_clear_review_envelope(cli, slm_home: Path, larger: str, settings: dict, message: str) -> None:
    configure(slm_home, **{"base_url": larger, **settings})
    result = cli("run", "extract-ticket", "--accept-at", "0.9999", "--escalate", "--input", INVOICE_TICKET)
    [envelope] = result.envelopes
    assert envelope["decision"] == "review" and not envelope["escalated"] and result.returncode == 4
    assert "escalation failed" in envelope["reason"] and message in envelope["reason"]
    assert envelope["escalation"]["error"] and envelope["escalation"]["hint"]
    assert envelope["valid"] and envelope["output"]["invoice_id"] == "INV-8821"  # the small answer is kept
    assert queue(slm_home) == [("extract-ticket", INVOICE_TICKET, "pending")]


def test_timeout(cli, slm_home: Path) -> None:
    with mute_server() as base:
        configure(slm_home, base_url=base, timeout_s=0.5, retries=1)
        result = cli("run", "extract-ticket", "--accept-at", "0.9999", "--escalate", "--input", INVOICE_TICKET)
    [envelope] = result.envelopes
    assert envelope["decision"] == "review" and "timed out after 0.5 s after 2 tries" in envelope["reason"]
    assert len(queue(slm_home)) == 1


def test_daily_budget(cli, slm_home: Path, larger: str) -> None:
    configure(slm_home, base_url=larger, max_per_day=1)
    lines = f"{INVOICE_TICKET}\nRefund INV-77 please, charged twice\n"
    first, second = cli(
        "run", "extract-ticket", "--jsonl", "--accept-at", "0.9999", "--escalate", stdin=lines
    ).envelopes
    assert first["escalated"] and not second["escalated"]
    assert second["decision"] == "review" and "daily escalation budget of 1 calls is used up" in second["reason"]
    # both wait for a person: the first answered by the larger model, never measured here; the second unescalated
    assert first["decision"] == "review" and "never measured on extract-ticket" in first["reason"]
    assert [row[1] for row in queue(slm_home)] == [INVOICE_TICKET, "Refund INV-77 please, charged twice"]


def test_api_key_is_sent_but_never_stored(cli, slm_home: Path, larger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(slm_home, base_url=larger, api_key_env="SLM_DESK_TEST_KEY")
    monkeypatch.setenv("SLM_DESK_TEST_KEY", "sk-test-do-not-store-4242")
    result = cli("run", "extract-ticket", "--accept-at", "0.9999", "--escalate", "--input", INVOICE_TICKET)
    assert result.envelopes[0]["escalated"]
    for path in (slm_home / "data").rglob("*"):
        if path.is_file():
            assert b"sk-test-do-not-store-4242" not in path.read_bytes(), path
    assert "sk-test" not in result.stdout + result.stderr


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_misbehaving_endpoint_loses_nothing_in_a_batch(cli, slm_home: Path, kind: str) -> None:
    """Malformed bodies and resets become `escalation.error`: every item is printed, recorded, and reviewed."""
    with misbehaving_server(kind) as base:
        configure(slm_home, base_url=base, retries=0)
        lines = f"{INVOICE_TICKET}\nThe app crashes on start\n"
        result = cli("run", "extract-ticket", "--jsonl", "--accept-at", "0.9999", "--escalate", stdin=lines)
    envelopes = result.envelopes
    assert [e["line"] for e in envelopes] == [1, 2], result.stderr
    for envelope in envelopes:
        assert envelope["decision"] == "review", envelope
        if kind == "prose answer":  # a reply, but not the contract: the small answer stays, for review
            assert envelope["escalated"] and "failed validation too" in envelope["reason"]
        else:
            assert envelope["escalation"]["error"] and not envelope["escalated"]
    assert result.returncode in (3, 4) and "internal error" not in result.stderr
    db = sqlite3.connect(slm_home / "data" / "history.sqlite3")
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM evalset WHERE label = 'teacher'").fetchone()[0] == 0
