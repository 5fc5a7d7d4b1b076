"""The trained head: span and label fields learned from a real pool (tests/data, public data), the measured
order of tiers, and the batch path that runs at the head's speed. The next tier is a scripted backend where a
test needs to choose how good it is; everything else is real (sklearn, crfsuite, the store, the CLI)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from slm_desk.contract.tasks import load_task
from slm_desk.data.evalset import builtin, read_jsonl
from slm_desk.desk import Desk
from slm_desk.judge import tiers
from slm_desk.judge.cascade import Cascade
from slm_desk.judge.pipeline import Pipeline
from slm_desk.learn import head, training
from tests.conftest import first_items, spawn
from tests.scripted import ScriptedBackend
from tests.zygote import Zygote

DATA = Path(__file__).parent / "data"
ROUTE_POOL = DATA / "route-ticket.pool.jsonl"
BOOKING_POOL = DATA / "extract-booking.pool.jsonl"


def test_which_tasks_get_a_head() -> None:
    assert load_task("route-ticket").head_fields == {"route": "label"}
    assert set(load_task("extract-booking").head_fields.values()) == {"span"}
    assert load_task("extract-ticket").head_fields == {"issue_type": "label", "invoice_id": "span", "urgency": "label"}
    assert load_task("guard").head_fields == {"label": "label", "span": "span"}
    assert load_task("rewrite-query").head_fields == {"query": "compress"}  # kept word by word from the input
    assert load_task("title-bug-report").head_fields == {"title": "compress"}
    support = load_task("draft-support-reply").head_fields
    assert support["intent"] == "label" and set(support.values()) == {"label", "span"}
    assert load_task("draft-reply").head_fields == {} and load_task("rewrite-followup").head_fields == {}


def test_a_span_head_trained_from_the_cli_answers_verbatim_and_generalises(cli) -> None:
    assert cli("examples", "add", "extract-booking", str(BOOKING_POOL)).returncode == 0
    trained = cli("train", "extract-booking", "--compare", "0")
    assert trained.returncode == 0, trained.stderr
    assert "people (span)" in trained.stdout and "the head alone" in trained.stdout
    assert "not measured (--compare 0)" in trained.stdout
    text = "Can I get a table for 4 people at 7pm on Friday? My name is Sam Jones"
    run = cli("run", "extract-booking", "--input", text)
    envelope = json.loads(run.stdout)
    assert envelope["answered_by"] == "head" and envelope["model"] == "label-head", envelope
    assert envelope["valid"] and envelope["tokens"]["completion"] == 0
    assert set(envelope["field_confidence"]) == set(envelope["output"])
    assert envelope["output"]["time"] == "7pm" and envelope["output"]["people"] == "4 people", envelope["output"]
    assert all(v is None or v in text for v in envelope["output"].values())

    task = load_task("extract-booking")  # the head the CLI saved, on the built-in eval set (no item is in the pool)
    loaded = head.load(Desk().store, task)
    assert loaded is not None
    assert loaded.report.field_kinds == dict.fromkeys(task.fields, "span") and loaded.report.folds == 5
    gold = read_jsonl(builtin("extract-booking"))  # type: ignore[arg-type]
    answers = loaded.backend.head.predict([g["input"] for g in gold])
    exact = sum(output == g["output"] for (output, _), g in zip(answers, gold, strict=True)) / len(gold)
    assert exact > 0.6, exact  # 400 examples; the whole public pool reaches about 0.91 (README)
    for (output, confidence), g in zip(answers, gold, strict=True):
        assert set(confidence) == set(task.fields) and all(0.0 <= c <= 1.0 for c in confidence.values())
        assert all(value is None or value in g["input"] for value in output.values())  # verbatim by construction


def test_a_task_with_free_text_cannot_have_a_head(cli) -> None:
    result = cli("train", "draft-reply")
    assert result.returncode == 2 and "neither labels nor declared copied verbatim" in result.stderr
    assert "compress" in result.stderr  # the other way a head can learn a text field


def test_too_few_examples_of_a_label_are_counted(cli, tmp_path: Path) -> None:
    small = first_items(ROUTE_POOL, 60, tmp_path / "small.jsonl")
    assert cli("examples", "add", "route-ticket", str(small)).returncode == 0
    result = cli("train", "route-ticket", "--compare", "0")
    assert result.returncode == 0, result.stderr
    assert "more labelled examples of route=" in result.stdout or "must raise that above the target" in result.stdout


# -- the order of tiers is measured --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def route_trained() -> training.Trained:
    return training.train(load_task("route-ticket"), read_jsonl(ROUTE_POOL))


def _cascade(trained: training.Trained, backend: ScriptedBackend, policy: tiers.TierPolicy) -> Cascade:
    task = load_task("route-ticket")
    first = Pipeline(task, head.HeadBackend(trained.head), trained.profile, tier="head", max_attempts=1)
    return Cascade(Pipeline(task, backend), head=first, policy=policy)


def _unsure(trained: training.Trained, policy: tiers.TierPolicy, defer: bool) -> list[str]:
    """Held-out inputs (the built-in eval set, none in the pool) that the shipped head is unsure of, in bands
    where the policy does (or does not) hand on; not those unlike the pool (they go to a person whatever the band)."""
    task = load_task("route-ticket")
    first = Pipeline(task, head.HeadBackend(trained.head), trained.profile, tier="head", max_attempts=1)
    inputs = [g["input"] for g in read_jsonl(builtin("route-ticket"))]  # type: ignore[arg-type]
    return [
        r.input
        for r in first.answer_batch(inputs)
        if not isinstance(r, Exception)
        and r.decision != "accept"
        and not task.always_reviewed(r.output or {})
        and r.unfamiliar is None
        and policy.band(r.confidence).defer == defer
    ]


def test_the_head_hands_on_where_the_next_tier_was_measured_better(route_trained: training.Trained) -> None:
    task = load_task("route-ticket")
    gold = {s.input: s.gold for s in route_trained.scored}
    gold.update({g["input"]: g["output"] for g in read_jsonl(builtin("route-ticket"))})  # type: ignore[arg-type]
    oracle = ScriptedBackend(lambda text: gold[text], confidence=0.95, model="oracle")
    policy, profile = tiers.measure(task, route_trained.scored, route_trained.ms_per_item, Pipeline(task, oracle), 60)
    assert policy.model == "oracle" and any(b.defer for b in policy.bands)
    for band in policy.bands:
        assert band.defer == (band.measured >= tiers.MIN_BAND and band.model_accuracy > band.head_accuracy)
    assert profile is not None and profile.model == "oracle"  # what it got right is its calibration
    head_only, cascade, _ = policy.frontier
    assert cascade.accuracy > head_only.accuracy  # a better next tier, where it is used, raises accuracy
    item = _unsure(route_trained, policy, defer=True)[0]
    oracle.asked.clear()
    result = _cascade(route_trained, oracle, policy).run(item)
    assert result.answered_by == "model" and oracle.asked == [item]
    assert result.reason.startswith("handed on by the head (in band") and "more accurate" in result.reason


def test_the_head_answer_stands_where_the_next_tier_was_measured_worse(route_trained: training.Trained) -> None:
    task = load_task("route-ticket")
    wrong = ScriptedBackend(lambda text: {"route": "other"}, confidence=0.99, model="always-other")
    policy, _ = tiers.measure(task, route_trained.scored, route_trained.ms_per_item, Pipeline(task, wrong), 60)
    assert not any(b.defer for b in policy.bands)
    unsure = _unsure(route_trained, policy, defer=False)
    assert unsure
    wrong.asked.clear()
    cascade = _cascade(route_trained, wrong, policy)
    for item in unsure[:10]:
        result = cascade.run(item)
        assert result.answered_by == "head" and result.decision != "accept"
        assert "the head's answer stands" in result.reason and "not more accurate" in result.reason
    assert wrong.asked == []  # the weaker model was never asked


def test_a_policy_measured_on_another_model_never_hands_on(route_trained: training.Trained) -> None:
    task = load_task("route-ticket")
    gold = {s.input: s.gold for s in route_trained.scored}
    oracle = ScriptedBackend(lambda text: gold[text], model="oracle")
    policy, _ = tiers.measure(task, route_trained.scored, route_trained.ms_per_item, Pipeline(task, oracle), 60)
    item = _unsure(route_trained, policy, defer=True)[0]
    other = ScriptedBackend(lambda text: gold[text], model="another-model")
    result = _cascade(route_trained, other, policy).run(item)
    assert result.answered_by == "head" and "train measured oracle as the next tier, not another-model" in result.reason
    assert other.asked == []


def test_without_a_measurement_the_head_alone_answers(route_trained: training.Trained) -> None:
    policy = tiers.no_comparison(route_trained.scored, route_trained.ms_per_item)
    backend = ScriptedBackend(lambda text: {"route": "other"})
    item = _unsure(route_trained, policy, defer=False)[0]
    result = _cascade(route_trained, backend, policy).run(item)
    assert result.answered_by == "head" and "was never measured against the head" in result.reason
    assert backend.asked == []


def test_an_uncalibrated_tier_never_accepts_and_says_what_measures_it() -> None:
    task = load_task("route-ticket")
    backend = ScriptedBackend(lambda text: {"route": "card_issue"}, confidence=0.999)
    plain = Pipeline(task, backend).answer("where is my card")
    assert plain.decision == "review" and "`slm-desk calibrate route-ticket` measures it" in plain.reason
    assert "--accept-at P or set accept_unmeasured = true" in plain.reason
    taught = Pipeline(task, backend, unmeasured="scripted was not measured on this task").answer("x y z")
    assert taught.decision == "review" and taught.reason == "not calibrated: scripted was not measured on this task"
    opted = Pipeline(task.model_copy(update={"accept_unmeasured": True}), backend).answer("where is my card")
    assert opted.decision == "accept" and "accept_unmeasured" in opted.reason


# -- the batch path ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taught_home(tmp_path_factory: pytest.TempPathFactory, zygote: Zygote) -> Path:
    """A home where route-ticket was taught through the CLI (`examples add`, `train`), once for the module."""
    folder = tmp_path_factory.mktemp("taught")
    home, pool = folder / "slm-home", first_items(ROUTE_POOL, 200, folder / "route.jsonl")
    env = {**os.environ, "SLM_DESK_HOME": str(home)}
    for args in (["examples", "add", "route-ticket", str(pool)], ["train", "route-ticket", "--compare", "0"]):
        done = zygote.run(args, b"", env, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
    return home


def _taught_route(slm_home: Path, taught_home: Path) -> None:
    shutil.copytree(taught_home, slm_home, dirs_exist_ok=True)


def test_a_high_risk_label_always_goes_to_review_and_the_reason_names_the_rule(
    cli, slm_home: Path, taught_home: Path
) -> None:
    _taught_route(slm_home, taught_home)
    lines = ["Someone stole my card and used it in a shop", "I have forgotten my passcode", "How do I top up?"]
    envelopes = cli("run", "route-ticket", "--jsonl", stdin="\n".join(lines) + "\n").envelopes
    routes = [e["output"]["route"] for e in envelopes]
    assert routes[0] == "fraud_or_security" and routes[2] != "fraud_or_security", routes
    for envelope in envelopes:
        if envelope["output"]["route"] == "fraud_or_security":
            assert envelope["decision"] == "review", envelope
            assert envelope["reason"].startswith("high-risk answer route=fraud_or_security always needs a second")
        else:
            assert envelope["decision"] != "review" or "high-risk" not in envelope["reason"], envelope


def _recorded_inputs(slm_home: Path) -> list[str]:
    from slm_desk import locations

    os.environ["SLM_DESK_HOME"] = str(slm_home)
    with sqlite3.connect(locations.history_db()) as db:
        return [row[0] for row in db.execute("SELECT input FROM runs ORDER BY id")]


def test_a_batch_keeps_its_order_and_bad_lines_get_their_envelopes_in_place(
    cli, slm_home: Path, taught_home: Path
) -> None:
    _taught_route(slm_home, taught_home)
    lines = ["Why was I charged a fee?", "{not json", json.dumps({"input": "", "id": 7}), "my card is lost", "ok"]
    result = cli("run", "route-ticket", "--jsonl", stdin="\n".join(lines) + "\n")
    envelopes = result.envelopes
    assert [e["line"] for e in envelopes] == [1, 2, 3, 4, 5]
    assert "error" in envelopes[1] and envelopes[2]["id"] == 7 and "line 3 has an empty input" in envelopes[2]["error"]
    assert "--input" not in envelopes[2]["hint"]  # a batch line is fixed in the file, not on the command line
    assert all(e["answered_by"] == "head" for e in (envelopes[0], envelopes[3], envelopes[4]))
    assert result.returncode == 2
    assert _recorded_inputs(slm_home) == [lines[0], lines[3], lines[4]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_every_printed_line_of_a_batch_is_recorded_when_it_is_stopped(
    slm_home: Path, taught_home: Path, sig: int
) -> None:
    _taught_route(slm_home, taught_home)
    queries = [json.loads(line)["input"] for line in ROUTE_POOL.read_text().splitlines()]
    bursts = [[f"{queries[(b * 97 + i) % len(queries)]} #{b}-{i}" for i in range(300)] for b in range(200)]
    child = spawn("run", "route-ticket", "--jsonl", stderr=subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None

    def feed() -> None:  # a producer that keeps writing, in bursts, until the child stops reading
        try:
            for burst in bursts:
                child.stdin.write("".join(line + "\n" for line in burst).encode())  # type: ignore[union-attr]
                child.stdin.flush()  # type: ignore[union-attr]
                time.sleep(0.01)
            child.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    printed = [child.stdout.readline() for _ in range(1500)]
    child.send_signal(sig)
    printed += child.stdout.readlines()
    child.wait(timeout=60)
    writer.join(timeout=10)
    envelopes = [json.loads(line) for line in printed if line.endswith(b"\n")]  # a torn last line was never delivered
    assert len(envelopes) >= 1500
    assert child.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    recorded = _recorded_inputs(slm_home)
    written = [line for burst in bursts for line in burst]
    assert [e["line"] for e in envelopes] == list(range(1, len(envelopes) + 1))  # in input order, none skipped
    assert recorded[: len(envelopes)] == written[: len(envelopes)]  # every printed line has its row (committed first)
    if sig == signal.SIGINT:
        assert len(recorded) == len(envelopes)  # Ctrl-C waits for the batch: nothing recorded goes unprinted


def test_bands_cover_every_confidence_once() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
    def law(confidence: float) -> None:
        i = tiers.band_index(confidence)
        lower, upper = tiers.EDGES[i], tiers.EDGES[i + 1]
        assert lower <= confidence < upper or (confidence == upper == 1.0)

    law()


def test_a_head_whose_pool_was_emptied_is_not_used(cli, slm_home: Path, taught_home: Path) -> None:
    _taught_route(slm_home, taught_home)
    removed = cli("examples", "rm", "route-ticket", "--all")
    assert "head is no longer used" in removed.stderr
    from slm_desk.desk import Desk

    assert Desk().head(load_task("route-ticket")) is None
