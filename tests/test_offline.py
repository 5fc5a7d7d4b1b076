"""The run path opens no network socket: an audit hook turns any socket creation, connect or DNS lookup into a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import INVOICE_TICKET

NO_NETWORK = """
import sys

def refuse(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        raise RuntimeError(f"network use during run: {event} {args!r}")

sys.addaudithook(refuse)
from slm_desk.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run_without_network(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


def test_the_hook_really_blocks_sockets() -> None:
    probe = NO_NETWORK.replace(
        "from slm_desk.cli import main\nraise SystemExit(main(sys.argv[1:]))", "import socket\nsocket.socket()"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode != 0 and "network use during run: socket.__new__" in done.stderr


@pytest.mark.model
def test_run_needs_no_network() -> None:
    done = run_without_network("run", "extract-ticket", "--jsonl", stdin=INVOICE_TICKET + "\nThe app crashes.\n")
    assert "network use" not in done.stderr, done.stderr
    assert done.returncode in (0, 3, 4), done.stderr
    assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == [1, 2]
