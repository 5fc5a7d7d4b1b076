"""The small model on servers: `run --jsonl --concurrency N` against two llama-cpp-python servers on 127.0.0.1.

They stand in for a llama-server or vLLM fleet. Confidence comes from the servers' logprobs; a server killed
mid-batch leaves the batch finishing on the other; with no server left every item gets an error envelope.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from slm_desk.contract.tasks import load_task
from slm_desk.data.catalog import BUNDLED_ID, resolve_model
from tests.servers import llama_server

QUERIES = [
    "Someone stole my card and bought things with it",
    "Where is my new card? It has not arrived",
    "How old do I have to be to open an account?",
    "I was charged twice for the same coffee",
    "My transfer to my friend has not arrived yet",
    "Can I get a refund for this purchase?",
    "Why is my top up still pending?",
    "The ATM took my card",
    "How do I change my PIN?",
    "What currencies can I hold?",
    "My card payment was declined",
    "Is there a fee for exchanging money?",
]


@pytest.fixture(scope="module")
def fleet():
    model = resolve_model(BUNDLED_ID).path
    with llama_server(model, alias="small") as a, llama_server(model, alias="small") as b:
        yield a, b


def run_batch(args: list[str], stdin: str) -> tuple[int, list[dict], str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "slm_desk", "run", "route-ticket", "--jsonl", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    out, err = child.communicate(stdin.encode(), timeout=600)
    return child.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


@pytest.mark.model
def test_concurrent_batch_on_two_servers_in_order_with_logprob_confidence(fleet, slm_home) -> None:
    a, b = fleet
    config = slm_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[runtime]\nbackend = ["{a}", "{b}"]\nmodel = "small"\n')
    lines = "\n".join(json.dumps({"input": q, "id": i}) for i, q in enumerate(QUERIES)) + "\n"
    rc, envelopes, err = run_batch(["--concurrency", "4"], lines)
    assert rc in (0, 3, 4), err
    assert [e["id"] for e in envelopes] == list(range(len(QUERIES)))  # input order, nothing lost
    labels = set(load_task("route-ticket").labels["route"])
    valid = [e for e in envelopes if e["valid"]]
    assert len(valid) >= len(QUERIES) - 2, err
    for envelope in valid:
        assert envelope["output"]["route"] in labels and envelope["answered_by"] == "model"
        assert envelope["confidence"] is not None and 0 < envelope["confidence"] <= 1, envelope
        assert envelope["model"] == "small"
    assert len({round(e["confidence"], 4) for e in valid}) > 1  # real per-input confidence, not a constant


@pytest.mark.model
def test_logprob_confidence_agrees_with_the_local_model(fleet, backend) -> None:
    """The same model and input: the server's label confidence (top-10 alternatives at each branch point) is
    close to the local one (every allowed label scored); the difference is the alternatives a server leaves out."""
    from slm_desk.judge.pipeline import Pipeline
    from slm_desk.models.served import OpenAIBackend

    task = load_task("route-ticket")
    remote = Pipeline(task, OpenAIBackend([fleet[0]], "small"))
    local = Pipeline(task, backend)
    for text in QUERIES[:3]:
        served, here = remote.answer(text), local.answer(text)
        if served.output != here.output:
            continue  # values-only and whole-object generation may pick different labels on a 135M model
        assert served.confidence == pytest.approx(here.confidence, abs=0.15), text


@pytest.mark.model
def test_a_server_killed_mid_batch_leaves_the_other_finishing(slm_home, tmp_path) -> None:
    model = resolve_model(BUNDLED_ID).path
    inputs = tmp_path / "queries.txt"
    inputs.write_text("\n".join(QUERIES) + "\n")
    with (
        llama_server(model, alias="small") as a,
        llama_server(model, alias="small", keep=True) as (b, server_b),
        inputs.open("rb") as stdin,
    ):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slm_desk",
                "run",
                "route-ticket",
                "--jsonl",
                "--concurrency",
                "2",
                "--backend",
                a,
                "--backend",
                b,
            ],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "stderr.txt").open("wb"),
            env=os.environ.copy(),
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # the batch is under way
        server_b.kill()
        rest = child.stdout.read()  # the same buffered reader: lines that came with the first are not lost
        child.wait(timeout=600)
    err = (tmp_path / "stderr.txt").read_bytes()
    envelopes = [json.loads(line) for line in (first + rest).decode().splitlines()]
    assert [e["line"] for e in envelopes] == list(range(1, len(QUERIES) + 1)), err.decode()
    assert all("error" not in e for e in envelopes), err.decode()  # every item answered by the survivor
    assert child.returncode in (0, 3, 4)


def test_no_server_left_reports_each_item_as_an_error(slm_home) -> None:
    from tests.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = slm_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[runtime]\nretries = 1\n")
    started = time.monotonic()
    rc, envelopes, err = run_batch(["--backend", dead, "--concurrency", "2"], "one\ntwo\nthree\n")
    assert rc == 5, err
    assert [e["line"] for e in envelopes] == [1, 2, 3]
    assert all(e["output"] is None and "unreachable" in e["error"] for e in envelopes)
    assert time.monotonic() - started < 60


REJECTIONS = {
    "llama-cpp-python 0.3.36's refusal": b'{"detail": [{"type": "literal_error", "loc": ["body", "response_format",'
    b' "type"], "msg": "Input should be \'text\' or \'json_object\'"}]}',
    "a bare 500": b"",
}


@pytest.mark.parametrize("rejection", list(REJECTIONS), ids=["named", "bare-500"])
def test_requests_in_flight_step_down_once_and_keep_constrained_decoding(cli, rejection: str) -> None:
    from tests.servers import picky_server

    lines = "".join(f"where is my card number {i}\n" for i in range(16))
    with picky_server(REJECTIONS[rejection]) as (url, asked):
        result = cli("run", "route-ticket", "--jsonl", "--concurrency", "4", "--backend", url, stdin=lines)
    assert result.returncode == 4, result.stderr  # valid, and never measured on route-ticket: review
    envelopes = result.envelopes
    assert len(envelopes) == 16 and all(e["valid"] and e["output"] == {"route": "card_issue"} for e in envelopes)
    assert all(e["decision"] == "review" and "not calibrated" in e["reason"] for e in envelopes)
    assert "none" not in asked  # never fell through to unconstrained prompting
    assert asked.count("json_schema") <= 4  # only the requests already in flight when the first refusal came back
    assert asked.count("json_object") == 16


def test_a_single_input_whose_server_is_down_gets_an_error_envelope_and_exit_5(cli) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    result = cli("run", "route-ticket", "--input", "where is my card", "--backend", url)
    assert result.returncode == 5, result.stderr
    [envelope] = result.envelopes
    assert envelope["valid"] is False and envelope["output"] is None and "unreachable" in envelope["error"]


def test_a_refused_logprobs_in_flight_never_steps_the_schema_form(cli) -> None:
    from tests.servers import picky_server

    lines = "".join(f"where is my card number {i}\n" for i in range(12))
    with picky_server(b"", answer='{"route": "card_issue"}', refuse_logprobs=True) as (url, asked):
        result = cli("run", "route-ticket", "--jsonl", "--concurrency", "4", "--backend", url, stdin=lines)
    assert result.returncode == 4, result.stderr  # valid, and never measured on route-ticket: review
    assert all(e["valid"] and e["confidence_note"] == "the server returned no logprobs" for e in result.envelopes)
    assert "none" not in asked and asked.count("json_schema+logprobs") <= 4  # each refusal turned logprobs off only
