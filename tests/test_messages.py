"""Messages that tell the truth: each one a user was misled by, through the real CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import first_items

ROUTE_POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"


def test_examples_add_counts_repeats_and_numbers_lines_as_an_editor_does(cli, tmp_path: Path) -> None:
    good = [json.loads(line) for line in ROUTE_POOL.read_text().splitlines()[:2]]
    relabel = {"input": good[0]["input"], "output": {"route": "fees_and_charges"}}
    odd = {"input": "my card was eaten by the ATM", "output": {"route": "card_issue"}}
    lines = [good[0], good[0], odd, good[1], good[0], relabel]
    path = tmp_path / "pool.jsonl"
    text = "".join(json.dumps(item) + "\n" for item in lines)
    path.write_text(text.replace(', "output": {"route": "card_issue"}', ',\r"output": {"route": "card_issue"}'))
    result = cli("examples", "add", "route-ticket", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 added, 0 relabelled, 0 unchanged, 2 repeated an earlier line, 0 skipped, 1 conflicting" in result.stderr
    assert f"conflict {path}:6: relabels the input of line 1" in result.stderr  # line 6, as `wc -l` counts


def test_a_task_files_reasons_arrive_in_one_round(cli, slm_home: Path) -> None:
    text = cli("tasks", "show", "route-ticket").stdout
    text = text.replace("max_tokens = ", 'max_tokens = "many" #', 1)  # a type error
    text = text.replace('other = "low"', 'otherwise = "low"', 1)  # and a contract error: labels vs the enum
    (slm_home / "config" / "tasks").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "tasks" / "two-rounds.toml").write_text(text)
    result = cli("run", "two-rounds", "--input", "where is my card")
    assert result.returncode == 2
    assert "max_tokens" in result.stderr and "must list exactly the schema's enum" in result.stderr
    assert "see 'Task file format' in the README" in result.stderr and "'Task files'" not in result.stderr


def test_a_span_field_without_verbatim_names_the_line_that_fixes_it(cli, slm_home: Path) -> None:
    text = cli("tasks", "show", "extract-booking").stdout
    start = text.index("[[validators]]")
    end = text.index("[[", start + 3) if "[[" in text[start + 3 :] else len(text)
    (slm_home / "config" / "tasks").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "tasks" / "no-verbatim.toml").write_text(text[:start] + text[end:])
    result = cli("train", "no-verbatim")
    assert result.returncode == 2
    assert '[[validators]] kind = "verbatim" fields = ["people", "date", "time", "first_name", "last_name"]' in (
        result.stderr
    )


@pytest.mark.model
def test_eval_names_the_tier_that_answered_and_prints_no_cost_it_was_not_given(cli, tmp_path: Path) -> None:
    pool = first_items(ROUTE_POOL, 300, tmp_path / "pool.jsonl")
    assert cli("examples", "add", "route-ticket", str(pool)).returncode == 0
    assert cli("train", "route-ticket", "--compare", "0", "--features", "tfidf").returncode == 0
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(line + "\n" for line in ROUTE_POOL.read_text().splitlines()[300:340]))
    result = cli("eval", "route-ticket", "--data", str(gold))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "answered by the trained head" in header and "on smollm2-135m" not in header, header
    assert "cost per 1,000" not in result.stdout  # no [costs] configured: no invented zero


@pytest.mark.model
def test_a_single_input_from_stdin_loses_its_newline_and_the_pool_holds_it_once(cli, tmp_path: Path) -> None:
    run = cli("run", "route-ticket", stdin="my card was stolen\n")
    assert run.returncode == 4, run.stderr  # high risk, or not measured: a person sees it
    stored = sqlite3.connect(tmp_path / "slm-home" / "data" / "history.sqlite3").execute("SELECT input FROM runs")
    assert [row[0] for row in stored] == ["my card was stolen"]
    [item] = json.loads(cli("review", "--json").stdout)
    assert cli("review", "correct", str(item["id"]), "--output", '{"route": "fraud_or_security"}').returncode == 0
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps({"input": "my card was stolen  ", "output": {"route": "fraud_or_security"}}) + "\n")
    added = cli("examples", "add", "route-ticket", str(again))
    assert "0 added, 0 relabelled, 1 unchanged" in added.stderr  # trailing whitespace is not another input
    assert len(json.loads(cli("examples", "list", "route-ticket", "--json").stdout)) == 1


def test_a_threshold_of_zero_reads_as_one() -> None:
    from slm_desk.contract.calibration import Sample, build_profile
    from slm_desk.contract.tasks import load_task

    task = load_task("route-ticket")
    samples = [Sample(c / 100, True, ["route=card_issue"]) for c in range(100)]  # 0.0 the least sure, and right
    profile = build_profile(task, "m", samples, len(samples), {})
    note = profile.thresholds["route=card_issue"].note
    assert profile.thresholds["route=card_issue"].threshold == 0.0
    assert note.startswith("accept at any confidence (the target held at every one)") and ">= 0.000" not in note
