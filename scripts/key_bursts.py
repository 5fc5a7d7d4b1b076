"""Random key bursts into the real app in tmux: each burst 4-12 keys in one `send-keys` call (machine speed), at
120x40, 80x24 or 60x20, then ctrl+q. scripts/fault_matrix.py runs these after its cases, on its taught home."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SLM_DESK = [sys.executable, "-m", "slm_desk"]


@dataclass
class Outcome:
    case: str
    status: int | None
    seconds: float
    problem: str = ""  # empty when the case held
    stderr_tail: str = ""
    skipped: str = ""


BURST_KEYS = [
    *"123456ajkrtuxsdpgiqe?/ ",
    "Enter",
    "Escape",
    "Tab",
    "BTab",
    "Up",
    "Down",
    "Left",
    "Right",
    "PageUp",
    "PageDown",
    "Home",
    "End",
    "F1",
    "F2",
    "F3",
    "F4",
    "F5",
    "F6",
    "F7",
    "C-r",
    "C-z",
    "BSpace",
]
SIZES = ((120, 40), (80, 24), (60, 20))


def _tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True)


def bursts(seed: int, rounds: int, home: Path) -> Outcome:
    """`rounds` bursts of 4-12 keys, each burst in one `send-keys` call (machine speed), then ctrl+q."""
    width, height = SIZES[seed % len(SIZES)]
    session = f"slm-desk-burst-{os.getpid()}-{seed}"
    scratch = Path(tempfile.mkdtemp(prefix="slm-desk-burst-"))
    copy = scratch / "home"
    shutil.copytree(home, copy, symlinks=True)
    status_file = scratch / "status"
    command = (
        f"cd {scratch} && SLM_DESK_HOME={copy} HF_HOME={scratch}/hf {' '.join(SLM_DESK)}; "
        f"echo $? > {status_file}; sleep 600"
    )
    started = time.monotonic()
    _tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command)
    rng = random.Random(seed)
    case = f"tui-bursts seed {seed} {width}x{height}"
    try:
        if not _wait_screen(session, "Tasks", 90):
            return Outcome(case, None, 0.0, "the app never showed its Tasks screen")
        for n in range(rounds):
            keys = [rng.choice(BURST_KEYS) for _ in range(rng.randint(4, 12))]
            _tmux("send-keys", "-t", session, *keys)
            time.sleep(rng.choice((0.05, 0.2, 0.5)))
            if status_file.exists():
                said = _tmux("capture-pane", "-p", "-t", session).stdout
                return Outcome(
                    case,
                    _status(status_file),
                    time.monotonic() - started,
                    f"the app ended in burst {n} ({' '.join(keys)})",
                    said[-600:],
                )
        _tmux("send-keys", "-t", session, "Escape", "Escape", "C-q")
        deadline = time.monotonic() + 30
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.3)
        status = _status(status_file)
        problem = "" if status == 0 else f"ctrl+q after the bursts: exit status {status}"
        return Outcome(case, status, round(time.monotonic() - started, 1), problem)
    finally:
        _tmux("kill-session", "-t", session)
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_screen(session: str, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in _tmux("capture-pane", "-p", "-t", session).stdout:
            return True
        time.sleep(0.3)
    return False


def _status(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
