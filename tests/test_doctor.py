from __future__ import annotations

import sys

import pytest

from slm_desk.models.doctor import REBUILD, probe_inference


def test_sigill_in_the_probe_is_reported_with_the_rebuild_command() -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
    result = probe_inference(crash)
    assert not result.ok
    assert "SIGILL" in result.message and REBUILD in result.hint and "GGML_NATIVE=OFF" in result.hint


def test_failing_probe_reports_its_last_line() -> None:
    result = probe_inference([sys.executable, "-c", "raise SystemExit('model file is truncated')"])
    assert not result.ok and "model file is truncated" in result.message


@pytest.mark.model
def test_doctor_on_this_machine(cli) -> None:
    result = cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU :" in result.stdout and "GPU offload:" in result.stdout
    assert "tiny inference: ok: generated" in result.stdout
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in result.stdout
