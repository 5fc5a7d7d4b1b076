"""Teaching a task from labelled examples: the pool, retrieved few-shot turns, the label head, and the wall
between what a task learns from and what judges it. Real data (tests/data), real inference, real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slm_desk.contract import prompt
from slm_desk.contract.tasks import load_task
from slm_desk.data.evalset import builtin, read_jsonl
from slm_desk.desk import Desk
from slm_desk.learn.retrieval import Retriever
from tests.conftest import first_items

DATA = Path(__file__).parent / "data"
ROUTE_POOL = DATA / "route-ticket.pool.jsonl"
BOOKING_POOL = DATA / "extract-booking.pool.jsonl"


def test_bad_pool_lines_are_named_and_skipped_and_the_rest_added(cli, tmp_path: Path) -> None:
    good = [json.loads(line) for line in ROUTE_POOL.read_text().splitlines()[:3]]
    lines = [
        json.dumps(good[0]),
        "not json at all",
        json.dumps({"input": "where is my card", "output": {"route": "no_such_queue"}}),
        json.dumps({"input": "", "output": {"route": "other"}}),
        json.dumps(good[1]),
        json.dumps({"input": "x", "output": {"route": "other", "extra": 1}}),
        json.dumps(good[2]),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("examples", "add", "route-ticket", str(path))
    assert result.returncode == 2, result.stderr  # the rest went in, and the exit code says not everything did
    assert "3 added, 0 relabelled, 0 unchanged, 4 skipped" in result.stderr
    assert "4 lines skipped (named above): fix them and add the file again" in result.stderr
    for number in (2, 3, 4, 6):
        assert f"{path}:{number}:" in result.stderr
    assert "no_such_queue" in result.stderr and "not JSON" in result.stderr
    listed = cli("examples", "list", "route-ticket", "--json")
    assert [i["input"] for i in json.loads(listed.stdout)] == [g["input"] for g in good]
    again = cli("examples", "add", "route-ticket", str(path))  # the same lines again change nothing, never duplicate
    assert "0 added, 0 relabelled, 3 unchanged" in again.stderr
    exported = cli("examples", "export", "route-ticket").stdout.splitlines()
    assert [json.loads(line) for line in exported] == good
    ids = [i["id"] for i in json.loads(listed.stdout)]
    assert "removed 1 item" in cli("examples", "rm", "route-ticket", str(ids[0])).stderr
    assert len(cli("examples", "export", "route-ticket").stdout.splitlines()) == 2


@pytest.mark.model
def test_eval_and_calibrate_drop_what_the_pool_holds(cli, tmp_path: Path) -> None:
    gold = read_jsonl(builtin("route-ticket"))[:24]  # type: ignore[arg-type]
    taught = tmp_path / "taught.jsonl"
    taught.write_text("".join(json.dumps(i) + "\n" for i in gold[:20]))
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in gold))
    assert cli("examples", "add", "route-ticket", str(taught)).returncode == 0
    result = cli("eval", "route-ticket", "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert "dropped 20 items" in result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 4 and report["dropped_in_pool"] == 20
    refused = cli("calibrate", "route-ticket", "--data", str(data))
    assert refused.returncode == 2 and "dropped 20 items" in refused.stderr and "too few" in refused.stderr


def test_retrieval_is_deterministic_and_finds_the_closest_examples() -> None:
    items = read_jsonl(BOOKING_POOL)
    first, second = Retriever(items, 8), Retriever(list(items), 8)
    query = "Can I book a table for 6 people at 8pm tomorrow under the name Ana Lopez?"
    shots = first.shots(query)
    assert shots is not None and len(shots) == 8
    assert shots == first.shots(query) == second.shots(query)
    probe = items[17]["input"]
    assert first.nearest(probe)[0] == 17  # an item is its own nearest neighbour...
    assert all(text != probe for text, _ in first.shots(probe) or [])  # ...but never its own example
    closest_text, closest_output = shots[-1]  # the most similar sits right before the input
    scores = first.nearest(query)
    assert items[scores[0]]["input"] == closest_text and json.loads(closest_output) == items[scores[0]]["output"]


def test_retrieved_examples_follow_the_fixed_instructions() -> None:
    task = load_task("extract-booking")
    shots = [
        ("a table for two", '{"people": "two", "date": null, "time": null, "first_name": null, "last_name": null}')
    ]
    messages = prompt.task_messages(task, "for 5 at noon", shots)
    assert messages[0] == prompt.prefix_messages(task)[0]  # the instruction prefix is unchanged: it stays cached
    assert [m["content"] for m in messages[1:]] == [shots[0][0], shots[0][1], "for 5 at noon"]


@pytest.mark.model
def test_an_empty_pool_behaves_as_before(backend) -> None:
    desk = Desk()
    task = load_task("extract-booking")
    pipeline = desk.pipeline(task, backend)
    assert pipeline.shots is None and desk.head(task) is None
    cascade = desk.cascade(task)
    assert cascade.head is None and cascade.small.shots is None
    result = cascade.run("A table for 4 at 7pm on Friday, name is Sam Jones")
    assert result.answered_by == "model"


@pytest.mark.model
def test_retrieved_examples_reach_the_model(backend) -> None:
    desk = Desk()
    task = load_task("extract-booking")
    from slm_desk.data import pool

    added = pool.add_file(desk.store, task, BOOKING_POOL)
    assert added.added == 400 and not added.skipped
    pipeline = desk.pipeline(task, backend)
    assert pipeline.shots is not None
    text = "I need a table for 3 at 6pm on Saturday"
    shots = pipeline.shots(text)
    assert shots is not None and len(shots) == task.retrieval.k
    result = pipeline.answer(text)
    static = desk.pipeline(task, backend, learned=False).answer(text)
    assert result.tokens.prompt != static.tokens.prompt  # another prompt: the retrieved turns, not the static ones
    assert result.valid or result.output is None  # an invalid answer is never printed as valid


@pytest.mark.model
def test_a_trained_head_answers_a_real_query_end_to_end(cli) -> None:
    assert cli("examples", "add", "route-ticket", str(ROUTE_POOL)).returncode == 0
    trained = cli("train", "route-ticket", "--compare", "8", "--json")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["pool_size"] == 600 and report["n_heldout"] == 600 and report["folds"] == 5  # out of fold
    assert report["heldout_accuracy"] > 0.8
    policy = report["policy"]
    # the LLM was measured, and only where the head would hand on: few of 600 items here
    assert policy["model"] == "smollm2-135m" and 1 <= policy["measured"] <= 8
    run = cli("run", "route-ticket", "--input", "Why was I charged a fee for my transfer?")
    envelope = json.loads(run.stdout)
    assert envelope["answered_by"] == "head", envelope
    assert envelope["output"] == {"route": "fees_and_charges"} and envelope["decision"] == "accept"
    assert envelope["model"] == "label-head" and envelope["tokens"]["completion"] == 0
    assert run.returncode == 0


def test_a_bad_byte_skips_its_line_and_a_relabel_is_a_conflict(cli, tmp_path: Path) -> None:
    good = [json.loads(line) for line in ROUTE_POOL.read_text().splitlines()[:3]]
    relabel = {"input": good[0]["input"], "output": {"route": "fees_and_charges"}}
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"  # a BOM, as some editors write
        + json.dumps(good[0]).encode()
        + b'\n{"input": "caf\xe9", "output": {"route": "other"}}\n'  # Latin-1, not UTF-8
        + json.dumps(good[1]).encode()
        + b"\n"
        + json.dumps(relabel).encode()
        + b"\n"
    )
    result = cli("examples", "add", "route-ticket", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}:2: not UTF-8 text" in result.stderr
    assert f"conflict {path}:4: relabels the input of line 1" in result.stderr
    assert "2 added, 0 relabelled, 0 unchanged, 1 skipped, 1 conflicting" in result.stderr
    pool = {i["input"]: i["output"] for i in json.loads(cli("examples", "list", "route-ticket", "--json").stdout)}
    assert pool[good[0]["input"]] == {"route": "fees_and_charges"}  # the later label, as the conflict line says


def test_a_file_with_no_good_line_is_a_usage_error(cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('not json\n{"input": "x", "output": {"route": "nope"}}\n')
    result = cli("examples", "add", "route-ticket", str(path))
    assert result.returncode == 2 and "nothing was added" in result.stderr


def test_train_says_why_it_asked_the_model_about_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train` on a task whose held-out items the head accepts, a person always checks or never saw said "measured
    on 0 items" without the reason; now the model is not loaded at all and the note counts each reason."""
    from slm_desk.desk import Desk
    from slm_desk.judge import tiers
    from slm_desk.models import preload

    monkeypatch.setattr(preload, "models_allowed", lambda: True)
    monkeypatch.setattr(tiers, "deferrable", lambda scored, task: [])
    desk = Desk()
    route = load_task("route-ticket")
    desk.add_examples(
        route, first_items(Path(__file__).parent / "data" / "route-ticket.pool.jsonl", 120, tmp_path / "p")
    )
    monkeypatch.setattr(desk, "backend", lambda *a, **k: pytest.fail("the model was built with nothing to ask"))
    training = desk.train(route, compare=10, features="tfidf")
    note = training.policy.note
    assert note.startswith("the small model was not asked: of 120 held-out items the head accepts"), note
    assert "carry a label a person always checks" in note and "unlike the pool" in note


def test_a_taught_task_judged_by_its_shipped_profile_says_so(tmp_path: Path) -> None:
    """The shipped profile measured the static prompt; once the task has a pool its answers come from retrieved
    examples, and the reason must not pass that measurement off as one of the taught task."""
    from tests.scripted import ScriptedBackend

    desk = Desk()
    task = load_task("rewrite-query")
    backend = ScriptedBackend(lambda text: {"query": text.split()[0]}, model="smollm2-135m")
    static = desk.pipeline(task, backend)
    assert static.profile is not None and static.profile.source and not static.profile.caveat
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        json.dumps({"input": "cheap flights to Denver please", "output": {"query": "flights Denver"}}) + "\n"
    )
    desk.add_examples(task, pool)
    taught = desk.pipeline(task, backend).answer("hotels near the Louvre in Paris")
    assert "the profile shipped for this model; it measured the static prompt" in taught.reason, taught.reason
    assert "slm-desk calibrate rewrite-query" in taught.reason
