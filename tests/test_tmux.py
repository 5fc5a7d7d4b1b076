"""The real app in a real terminal: tmux runs it, send-keys types, capture-pane reads what a person would see."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import INVOICE_TICKET

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/install.sh --dev)"),
]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for(session: str, predicate, timeout: float = 120) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if predicate(screen):
            return screen
        time.sleep(0.5)
    raise AssertionError(f"timed out; the screen showed:\n{screen}")


def test_run_extract_ticket_in_a_real_terminal(slm_home: Path) -> None:
    session = f"slm-desk-test-{os.getpid()}"
    slm_desk = Path(sys.executable).parent / "slm-desk"
    command = f"env SLM_DESK_HOME={slm_home} HF_HOME={slm_home}/hf {slm_desk} ui --task extract-ticket"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        wait_for(session, lambda s: "Tasks" in s and "ctrl+r runs" in s, timeout=60)
        tmux("send-keys", "-t", session, "-l", INVOICE_TICKET)
        tmux("send-keys", "-t", session, "C-r")
        screen = wait_for(session, lambda s: "done:" in s)
        fields = [line for line in screen.splitlines() if "invoice_id" in line]
        assert fields, screen
        accepted = "ACCEPT" in screen
        assert ("INV-8821" in fields[0]) or not accepted, screen
        assert "VALID" in screen
        tmux("send-keys", "-t", session, "F2")
        history = wait_for(session, lambda s: "1 run" in s, timeout=30)
        assert "extract-ticket" in history
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], capture_output=True)
        time.sleep(0.5)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
