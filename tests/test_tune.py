"""`slm-desk tune`: a real (short) LoRA fine-tune of the bundled model, exported to GGUF and run by llama.cpp.

The module fixture trains once, in its own home folder; tests that need the adapter installed copy the file
into their own home, as a person copying an adapter between machines would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slm_desk.contract.tasks import load_task
from slm_desk.data import adapters
from slm_desk.data.catalog import BUNDLED_ID, resolve_model
from slm_desk.data.config import RuntimeConfig
from slm_desk.learn import tune
from slm_desk.models import backends

pytestmark = pytest.mark.model
POOL = Path(__file__).parent / "data" / "extract-booking.pool.jsonl"
UNSEEN = "Hi, this is Dora Kim, I need a table for 3 on Friday at 8pm."
SETTINGS = tune.Settings(epochs=2, rank=4, learning_rate=3e-3, batch_size=4)


def _items(n: int) -> list[tuple[str, dict[str, Any]]]:
    """Booking examples with at least two slots filled (the ones that teach the most)."""
    rows = [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines()]
    rich = [r for r in rows if sum(v is not None for v in r["output"].values()) >= 2]
    return [(r["input"], r["output"]) for r in rich[:n]]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("tune-home")
    previous = os.environ.get("SLM_DESK_HOME")
    os.environ["SLM_DESK_HOME"] = str(home)
    try:
        result = tune.tune(load_task("extract-booking"), resolve_model(BUNDLED_ID), _items(24), SETTINGS, holdout=0)
    finally:
        if previous is None:
            os.environ.pop("SLM_DESK_HOME", None)
        else:
            os.environ["SLM_DESK_HOME"] = previous
    return result


def _install(tuned: Any) -> Path:
    target = adapters.path_for("extract-booking", BUNDLED_ID)
    shutil.copy(tuned.path, target)
    return target


def _context(engine: Any) -> list[int]:
    """An unseen input's prompt as run sends it to a tuned model, up to the first value it samples."""
    task = load_task("extract-booking")
    example = tune.encode(engine, task, UNSEEN, dict.fromkeys(task.fields))
    first_key = engine.tokenize_plain('{"people":')
    return example.tokens[: example.answer_from + len(first_key)]


def test_llama_cpp_with_the_written_adapter_matches_the_trained_model(tuned: Any, backend: Any) -> None:
    """The export is right when llama.cpp with the GGUF adapter gives the PEFT model's next-token distribution.

    Tolerance: the base weights are identical (the GGUF's Q4_1 blocks, dequantized), but llama.cpp multiplies
    Q4_1 weights with activations it rounds to 8 bits (Q8_1), so even the base models differ by ~0.1-0.2 nats
    on top tokens. The adapter may add little to that: at most 0.15 nats beyond the base gap, under 0.4 in all.
    A wrong tensor layout (A/B swapped, q/k rows not permuted) misses by whole nats.
    """
    import torch

    model = resolve_model(BUNDLED_ID)
    tuned_backend = backends.local(model, RuntimeConfig(), adapter=tuned.path)
    with backend.lock, tuned_backend.lock:
        context = _context(backend.engine)
        cpp_base = backend.engine.next_logprobs(context)
        cpp_tuned = tuned_backend.engine.next_logprobs(context)
    ids = torch.tensor([context])
    with torch.no_grad():
        torch_tuned = torch.log_softmax(tuned.model(input_ids=ids).logits[0, -1].double(), -1).numpy()
        with tuned.model.disable_adapter():
            torch_base = torch.log_softmax(tuned.model(input_ids=ids).logits[0, -1].double(), -1).numpy()

    top = np.argsort(-torch_tuned)[:20]
    shift = np.abs(torch_tuned[top] - torch_base[top]).max()
    base_gap = np.abs(cpp_base[top] - torch_base[top]).max()
    tuned_gap = np.abs(cpp_tuned[top] - torch_tuned[top]).max()
    assert shift > 1.0, f"the adapter barely moved the distribution ({shift:.2f} nats)"
    assert tuned_gap < 0.4, f"llama.cpp with the adapter is {tuned_gap:.2f} nats from PEFT"
    assert tuned_gap <= base_gap + 0.15, f"the export adds {tuned_gap - base_gap:.2f} nats to the base gap"
    assert int(np.argmax(cpp_tuned)) == int(top[0])


def test_the_adapter_describes_itself(tuned: Any, slm_home: Path) -> None:
    adapter = adapters.read(_install(tuned))
    assert (adapter.task, adapter.task_version, adapter.base_model) == ("extract-booking", 1, BUNDLED_ID)
    assert adapter.base_sha256 == adapters.file_sha256(resolve_model(BUNDLED_ID).path)
    assert (adapter.rank, adapter.alpha, adapter.examples) == (4, 8.0, 24)
    assert adapter.report["final_loss"] < 2


def test_run_uses_the_adapter_and_no_adapter_turns_it_off(tuned: Any, cli: Any) -> None:
    _install(tuned)
    with_adapter = cli("run", "extract-booking", "--input", UNSEEN, "--no-log")
    envelope = with_adapter.envelopes[0]
    assert with_adapter.returncode == 4, with_adapter.stderr  # a new adapter was never measured: review
    assert envelope["decision"] == "review" and "calibrate" in envelope["reason"]
    assert envelope["model"] == f"{BUNDLED_ID}+lora"
    assert envelope["valid"] is True
    without = cli("run", "extract-booking", "--input", UNSEEN, "--no-log", "--no-adapter")
    assert without.envelopes[0]["model"] == BUNDLED_ID
    listed = json.loads(cli("adapters", "--json").stdout)
    assert [(r["task"], r["status"]) for r in listed] == [("extract-booking", "in use")]


@pytest.mark.parametrize(
    ("change", "message"),
    [({"base_sha256": "0" * 64}, "trained on another file"), ({"task_version": 7}, "trained on task version 7")],
)
def test_an_adapter_for_another_base_or_task_version_is_refused(
    tuned: Any, cli: Any, change: dict[str, Any], message: str
) -> None:
    tune.write_adapter(tuned.model, SETTINGS, adapters.path_for("extract-booking", BUNDLED_ID), tuned.meta | change)
    result = cli("run", "extract-booking", "--input", UNSEEN, "--no-log")
    assert result.returncode == 2
    assert message in result.stderr and "--no-adapter" in result.stderr
    assert result.stdout == ""
    assert cli("run", "extract-booking", "--input", UNSEEN, "--no-log", "--no-adapter").returncode in (0, 3)
    status = json.loads(cli("adapters", "--json").stdout)[0]["status"]
    assert status.startswith("refused") and message in status
    assert cli("adapters", "rm", "extract-booking").returncode == 0
    assert not adapters.path_for("extract-booking", BUNDLED_ID).exists()


def test_an_interrupted_tune_writes_nothing() -> None:
    def stop(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune.tune(load_task("extract-booking"), resolve_model(BUNDLED_ID), _items(16), SETTINGS, 0, on_step=stop)
    assert list(adapters.folder().iterdir()) == []


def test_tune_from_the_command_line_reports_before_and_after(cli: Any, tmp_path: Path) -> None:
    data = tmp_path / "bookings.jsonl"
    lines = [json.dumps({"input": text, "output": output}) for text, output in _items(12)]
    data.write_text("\n".join([*lines, '{"input": "no output"}']) + "\n", encoding="utf-8")
    result = cli("tune", "extract-booking", "--data", str(data), "--epochs", "1", "--holdout", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["examples"] == 9 and report["held_out"] == 3
    assert set(report["before"]) == set(report["after"]) == {"accuracy", "validity", "latency_ms_p50"}
    assert "bookings.jsonl:13" in result.stderr  # the bad line is named, the rest still train
    assert "step 2/2" in result.stderr  # 9 examples in batches of 8
    written = adapters.read(adapters.path_for("extract-booking", BUNDLED_ID))
    assert written.report["after"] == report["after"]


def test_tune_without_the_extra_says_what_to_install(
    cli: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from slm_desk.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    assert main(["tune", "extract-booking"]) == 2
    assert "pip install 'slm-desk[tune]'" in capsys.readouterr().err


def test_bad_tune_settings_are_refused(cli: Any) -> None:
    result = cli("tune", "extract-booking", "--epochs", "0")
    assert result.returncode == 2 and "--epochs must be positive" in result.stderr


def test_a_retuned_adapter_replaces_the_loaded_one(tuned: Any) -> None:
    """Tuning again writes the same path; the next run must load the new file, not keep the old one loaded."""
    path = _install(tuned)
    model = resolve_model(BUNDLED_ID)
    first = backends.local(model, RuntimeConfig(), adapter=path)
    assert backends.local(model, RuntimeConfig(), adapter=path) is first
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert backends.local(model, RuntimeConfig(), adapter=path) is not first
