"""The `cli` fixture's warm start (tests/zygote.py) behaves as a cold `python -m slm_desk`: the same exit status,
stdout and stderr, an uncaught exception's traceback, a kill at the timeout, the test's environment and stdin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import mute_server
from tests.zygote import Zygote

COMMANDS = [
    (["--version"], b""),
    (["tasks"], b""),
    (["run", "no-such-task", "--input", "x"], b""),
    (["run", "route-ticket", "--input", ""], b""),
    (["examples", "add", "route-ticket", "/no/such/file.jsonl"], b""),
    (["run", "route-ticket", "--jsonl", "--backend", "http://127.0.0.1:9/v1"], b"{not json\n"),
]


@pytest.mark.parametrize(("args", "stdin"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_warm_child_answers_as_a_cold_one(zygote: Zygote, args: list[str], stdin: bytes) -> None:
    cold = subprocess.run([sys.executable, "-m", "slm_desk", *args], input=stdin, capture_output=True, timeout=120)
    warm = zygote.run(args, stdin, os.environ.copy(), timeout=120)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_an_uncaught_exception_and_a_timeout_end_the_child_as_a_cold_one_would(zygote: Zygote) -> None:
    cold = subprocess.run([sys.executable, "-m", "zipfile", "-l", "/no/such.zip"], capture_output=True, timeout=120)
    warm = zygote.run(["-l", "/no/such.zip"], b"", os.environ.copy(), timeout=120, module="zipfile")
    assert cold.returncode == warm.returncode == 1 and b"Traceback" in warm.stderr  # zipfile leaves it uncaught
    assert warm.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1]
    with mute_server() as url, pytest.raises(subprocess.TimeoutExpired):  # a hung request: killed at the timeout
        zygote.run(["run", "route-ticket", "--input", "x", "--backend", url], b"", os.environ.copy(), timeout=1)
    assert zygote.run(["--version"], b"", os.environ.copy(), timeout=60).returncode == 0  # and the zygote serves on
