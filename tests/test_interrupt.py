"""Ctrl-C in the middle of a batch: every printed line is whole JSON and has its history row, nothing more."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import sigint_default


def test_ctrl_c_mid_batch_keeps_output_and_history_consistent(slm_home: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "slm_desk", "run", "extract-ticket", "--jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
        preexec_fn=sigint_default,
    )
    assert child.stdin and child.stdout
    child.stdin.write(b"".join(f"Refund invoice INV-{n} please, it was charged twice.\n".encode() for n in range(40)))
    child.stdin.flush()
    first_lines = [child.stdout.readline(), child.stdout.readline()]
    child.send_signal(signal.SIGINT)
    rest, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr.decode()
    printed = [json.loads(line) for line in b"".join(first_lines).decode().splitlines() + rest.decode().splitlines()]
    assert 2 <= len(printed) < 40
    assert [e["line"] for e in printed] == list(range(1, len(printed) + 1))
    assert "interrupted after" in stderr.decode() and "the rest was not run" in stderr.decode()
    rows = sqlite3.connect(slm_home / "data" / "history.sqlite3").execute("SELECT count(*) FROM runs").fetchone()[0]
    assert rows == len(printed)
