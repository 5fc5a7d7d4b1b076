"""What new users hit in their first minutes: pipes into head, damaged files, two processes at once, file modes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slm_desk.data.catalog import bundled_model_path

SLM = f"{sys.executable} -m slm_desk"


def shell(command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, text=True, timeout=300)


@pytest.mark.model
@pytest.mark.parametrize("command", ["paths --json", "run route-ticket --jsonl", "tasks", "models"])
def test_piping_into_head_exits_quietly(command: str) -> None:
    lines = "Where is my card?\nI was charged twice\nHow do I change my PIN?\nThe ATM took my card\n"
    done = shell(f"set -o pipefail; {SLM} {command} | head -n1; echo rc=${{PIPESTATUS[0]}} >&2", lines)
    rc = int(done.stderr.strip().rsplit("rc=", 1)[1])
    assert rc in (0, 141), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert len(done.stdout.splitlines()) == 1


@pytest.fixture(scope="module")
def damaged_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled GGUF with a valid header and its weights overwritten: llama.cpp loads it and computes NaN."""
    source = bundled_model_path()
    assert source is not None
    data = bytearray(source.read_bytes())
    start = len(data) // 3
    data[start:] = b"\xff" * (len(data) - start)
    path = tmp_path_factory.mktemp("damaged") / "damaged.gguf"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.model
def test_damaged_weights_give_error_envelopes_not_an_abort(cli, damaged_gguf: Path) -> None:
    result = cli("run", "route-ticket", "--jsonl", "--model", str(damaged_gguf), stdin="one\ntwo\n")
    assert result.returncode == 5, result.stderr[-2000:]  # not 134 (SIGABRT)
    envelopes = result.envelopes  # stdout is JSON lines only: native noise went to stderr
    assert [e["line"] for e in envelopes] == [1, 2]
    assert all(e["output"] is None and "non-finite" in e["error"] for e in envelopes)
    single = cli("run", "route-ticket", "--model", str(damaged_gguf), "--input", "one")
    assert single.returncode == 5 and "non-finite" in single.envelopes[0]["error"]  # as in --jsonl, not exit 1


def _open_store_at_once(barrier: Any, errors: Any) -> None:
    from slm_desk import locations
    from slm_desk.data.store import Store

    try:
        barrier.wait(timeout=60)
        Store(locations.history_db()).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        errors.put(f"{type(exc).__name__}: {exc}")


def test_eight_processes_create_one_store_without_racing_while_the_cores_are_busy(slm_home: Path) -> None:
    """Eight processes (forked: no import time between them) open a store that does not exist yet at the same
    moment, on a machine whose cores are busy, ten times over."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # a loaded machine
    try:
        for _ in range(10):
            db = slm_home / "data" / "history.sqlite3"
            for leftover in db.parent.glob("history.sqlite3*") if db.parent.exists() else []:
                leftover.unlink()
            barrier, errors = fork.Barrier(8), fork.Queue()
            children = [fork.Process(target=_open_store_at_once, args=(barrier, errors)) for _ in range(8)]
            for child in children:
                child.start()
            for child in children:
                child.join(timeout=120)
            assert [child.exitcode for child in children] == [0] * 8
            assert errors.empty(), errors.get()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


@pytest.mark.model
def test_history_and_config_are_private_to_the_user(cli, slm_home: Path) -> None:
    assert cli("run", "extract-ticket", "--input", "Refund INV-3 please").returncode in (0, 3, 4)
    from slm_desk.data.config import set_value

    set_value("runtime", "threads", 1)
    for path in (slm_home / "data" / "history.sqlite3", slm_home / "config" / "config.toml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (slm_home / "data", slm_home / "config"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_files_that_are_not_utf8_are_usage_errors_naming_the_file(cli, slm_home: Path) -> None:
    tasks = slm_home / "config" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "latin.toml").write_bytes("description = 'caf\xe9'\n".encode("latin-1"))
    result = cli("run", "latin", "--input", "x")
    assert result.returncode == 2 and "latin.toml is not UTF-8" in result.stderr
    (slm_home / "config" / "config.toml").write_bytes(b"[runtime]\nthreads = 1 # \xe9\n")
    result = cli("run", "extract-ticket", "--input", "x")
    assert result.returncode == 2 and "config.toml is not UTF-8" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--threads", "-3"], "threads"), (["--ctx", "10"], "n_ctx"), (["--concurrency", "0"], "concurrency")],
)
def test_bad_runtime_values_are_refused_not_adjusted(cli, args: list[str], message: str) -> None:
    result = cli("run", "extract-ticket", "--input", "Refund INV-3 please", *args)
    assert result.returncode == 2 and message in result.stderr and not result.stdout


@pytest.mark.model
def test_a_json_array_line_is_an_error_and_bracketed_text_is_text(cli) -> None:
    result = cli("run", "route-ticket", "--jsonl", stdin='["not", "an", "input"]\n[ticket 4411] my card is lost\n')
    first, second = result.envelopes
    assert "JSON array" in first["error"] and second["valid"] and second["line"] == 2
    assert result.returncode == 2


def test_eval_compare_with_a_missing_report_is_a_usage_error(cli, tmp_path: Path) -> None:
    present = tmp_path / "b.json"
    present.write_text(json.dumps({"model": "m"}))
    result = cli("eval", "compare", str(tmp_path / "missing.json"), str(present))
    assert result.returncode == 2 and "missing.json" in result.stderr and "internal error" not in result.stderr


def test_evalset_export_of_an_unknown_task_is_a_usage_error(cli) -> None:
    result = cli("evalset", "export", "no-such-task")
    assert result.returncode == 2 and "unknown task" in result.stderr


def test_models_info_on_a_file_that_is_not_gguf_is_a_usage_error(cli, tmp_path: Path) -> None:
    for name, data in (("empty.gguf", b""), ("notes.gguf", b"just some text\n")):
        path = tmp_path / name
        path.write_bytes(data)
        result = cli("models", "info", str(path))
        assert result.returncode == 2, result.stderr
        assert "is not a readable GGUF model" in result.stderr and "internal error" not in result.stderr


def test_an_unknown_model_is_not_offered_as_a_pull(cli) -> None:
    result = cli("run", "extract-ticket", "--model", "nope", "--input", "x")
    assert result.returncode == 2
    assert "slm-desk pull nope" not in result.stderr and "slm-desk models" in result.stderr


def test_tasks_lists_the_whole_reason_a_task_is_refused(cli, user_task) -> None:
    user_task("unenforceable")
    from slm_desk.contract.tasks import load_task
    from slm_desk.errors import SlmDeskError

    with pytest.raises(SlmDeskError) as refused:
        load_task("unenforceable")
    listed = cli("tasks").stdout
    for line in str(refused.value).splitlines():
        assert line.strip() in listed


@pytest.mark.model
def test_a_max_tokens_larger_than_the_context_is_blamed_not_the_input(cli, user_task) -> None:
    path = user_task("forced-fail", "long-answer")
    path.write_text(path.read_text().replace("max_tokens = 16", "max_tokens = 4096"))
    result = cli("run", "long-answer", "--input", "Hello, my name is Maria.", "--no-log")
    assert result.returncode == 2
    assert "reserves up to 4096 tokens for the answer" in result.stderr and "lower max_tokens" in result.stderr
    assert "shorten the input" not in result.stderr


def test_json_errors_read_well() -> None:
    from slm_desk.contract.tasks import load_task
    from slm_desk.contract.validation import validate_output

    errors = validate_output(load_task("extract-ticket"), '{"issue_type": "bill', "x")[1]
    assert errors and "at at" not in errors[0] and "starting at character" in errors[0]


@pytest.mark.model
def test_review_show_prints_an_invalid_answer_once_encoded(cli, user_task) -> None:
    user_task("forced-fail")
    run = cli("run", "forced-fail", "--input", "1234 5678 9999")
    assert run.returncode == 3
    listed = json.loads(cli("review", "--json").stdout)
    assert len(listed) == 1 and listed[0]["candidate_valid"] is False
    shown = json.loads(cli("review", "show", str(listed[0]["id"])).stdout)
    assert shown["candidate"] == run.envelopes[0]["rejected_output"]  # the text the model wrote, as it wrote it


WRONG_TYPES = [('[history]\nenabled = "off"\n', "history.enabled"), ('[runtime]\nthreads = "2"\n', "runtime.threads")]


@pytest.mark.parametrize("toml, key", WRONG_TYPES)
def test_config_values_of_the_wrong_type_are_named_not_coerced(cli, slm_home: Path, toml: str, key: str) -> None:
    from slm_desk import locations

    locations.config_file().write_text(toml)
    result = cli("run", "route-ticket", "--input", "where is my card")
    assert result.returncode == 2 and key in result.stderr and result.stdout == ""


@pytest.mark.parametrize("kind", ["directory", "dangling symlink"])
def test_a_folder_or_a_broken_link_where_a_file_should_be_is_named(cli, slm_home: Path, kind: str) -> None:
    from slm_desk import locations

    for target in (locations.user_tasks_dir() / "route-ticket.toml", locations.config_file()):
        if kind == "directory":
            target.mkdir()
        else:
            target.symlink_to(target.parent / "gone.toml")
        result = cli("run", "route-ticket", "--input", "where is my card")
        assert result.returncode == 2 and str(target) in result.stderr, result.stderr
        assert "internal error" not in result.stderr
        target.rmdir() if kind == "directory" else target.unlink()


def test_a_task_file_with_a_bom_loads(user_task) -> None:
    from slm_desk.contract.tasks import load_task

    path = user_task("forced-fail", as_name="bom-task")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_task("bom-task").name == "bom-task"  # not "Invalid statement (at line 1, column 1)"


@pytest.mark.parametrize("content", [b"", b"this is text, not a model\n", b"GGUF\x03\x00\x00\x00"])
def test_a_model_file_that_cannot_load_is_a_usage_error(cli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    result = cli("run", "route-ticket", "--model", str(path), "--input", "where is my card")
    assert result.returncode == 2, result.stderr
    assert "not a readable GGUF model" in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("n_ctx", ["131072", "10000000"])
def test_a_context_beyond_what_the_model_was_trained_on_is_named(cli, n_ctx: str) -> None:
    result = cli("run", "route-ticket", "--ctx", n_ctx, "--input", "where is my card")
    assert result.returncode == 2 and "8,192 tokens smollm2-135m was trained on" in result.stderr, result.stderr
    assert "partial download" not in result.stderr


def _adapter(path: Path) -> None:
    """A small GGUF LoRA file that describes itself as route-ticket's adapter for the bundled model."""
    import gguf
    import numpy as np

    from slm_desk.data import adapters
    from slm_desk.data.catalog import BUNDLED_ID, resolve_model

    model = resolve_model(BUNDLED_ID)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    meta = {"task": "route-ticket", "base_model": BUNDLED_ID, "base_sha256": adapters.base_sha256(model)}
    for key, value in meta.items():
        writer.add_string(adapters.KEY + key, value)
    writer.add_uint32(adapters.KEY + "task_version", 1)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, 576), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((576, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.model
def test_a_truncated_adapter_is_refused_before_llama_cpp_reads_it_and_listed(cli) -> None:
    from slm_desk.data import adapters
    from slm_desk.data.catalog import BUNDLED_ID

    path = adapters.path_for("route-ticket", BUNDLED_ID)
    _adapter(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])  # the last tensor cut short, as an interrupted copy leaves it
    result = cli("run", "route-ticket", "--input", "where is my card")
    assert result.returncode == 2 and "is cut short" in result.stderr and "--no-adapter" in result.stderr
    listed = cli("adapters")
    assert "unreadable" in listed.stderr and "cut short" in listed.stderr and "no adapters yet" not in listed.stderr
    assert cli("run", "route-ticket", "--input", "where is my card", "--no-adapter").returncode in (0, 4)


def test_a_cut_model_file_is_named_by_models_info_and_refused_by_run(cli, tmp_path: Path) -> None:
    source = bundled_model_path()
    assert source is not None
    cut = tmp_path / "half.gguf"
    with source.open("rb") as whole:
        cut.write_bytes(whole.read(8 * 2**20))  # the header and a few tensors of a 98 MB file
    info = cli("models", "info", str(cut))
    assert info.returncode == 2 and "is cut short" in info.stderr
    run = cli("run", "route-ticket", "--model", str(cut), "--input", "where is my card")
    assert run.returncode == 2 and "is cut short" in run.stderr


@pytest.mark.model
def test_a_line_the_reader_never_got_is_not_recorded(slm_home: Path) -> None:
    lines = "Where is my card?\nI was charged twice\nHow do I change my PIN?\nThe ATM took my card\n"
    done = shell(f"set -o pipefail; {SLM} run route-ticket --jsonl | head -n2; echo rc=${{PIPESTATUS[0]}} >&2", lines)
    assert len(done.stdout.splitlines()) == 2
    import sqlite3

    rows = sqlite3.connect(slm_home / "data" / "history.sqlite3").execute("SELECT count(*) FROM runs").fetchone()[0]
    assert rows == 2, done.stderr  # each answer takes a model's time: the third was written after head had gone


@pytest.mark.model
def test_a_model_with_zeroed_weights_is_refused_not_accepted(cli, tmp_path: Path) -> None:
    from slm_desk.data.gguf_header import read_file_layout

    source = bundled_model_path()
    assert source is not None
    _, layout = read_file_layout(source)
    assert layout is not None
    data = bytearray(source.read_bytes())
    data[layout.data_start :] = bytes(len(data) - layout.data_start)  # a valid header over weights that are all zero
    zeroed = tmp_path / "zeroed.gguf"
    zeroed.write_bytes(data)
    result = cli("run", "route-ticket", "--model", str(zeroed), "--input", "where is my card")
    assert result.returncode == 2 and "same probability" in result.stderr, result.stderr[-1500:]
    assert result.stdout == ""  # nothing accepted at a confidence of 1/vocabulary


def test_an_adapter_of_random_bytes_is_listed_and_refused(cli) -> None:
    import os

    from slm_desk.data import adapters
    from slm_desk.data.catalog import BUNDLED_ID

    adapters.path_for("route-ticket", BUNDLED_ID).write_bytes(os.urandom(4096))
    result = cli("run", "route-ticket", "--input", "where is my card")
    assert result.returncode == 2 and "not a readable adapter" in result.stderr
    listed = cli("adapters")
    assert "unreadable" in listed.stderr and "no adapters yet" not in listed.stderr
