"""A warm start for the `cli` fixture: `python -m slm_desk ARGS` in a child forked from a process that has already
imported the CLI and scikit-learn, instead of a cold interpreter that imports them again (0.3-1.5 s of CPU, about
ninety times in the fast tier).

What the child runs is what a cold `python -m slm_desk` runs: the `slm_desk` package's `__main__` through runpy,
with the test's argv, environment and working folder, its stdin, stdout and stderr on file descriptors 0-2 (regular
files, not pipes: a test that streams to a child or signals it uses `spawn`), and the interpreter's ending
(non-daemon threads joined, atexit handlers, streams flushed, the exit status a shell would see; a signal's death
is a negative code, as in subprocess). What differs is only what import time would do: the modules below are
already loaded, which they load without reading the environment. Tests about imports,
signals and terminals start cold interpreters (`tests.conftest.spawn`, tests/test_import_hygiene.py).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import runpy
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported once here; none of them reads the environment at import time (huggingface_hub and openai do: the
# child imports those itself, as a cold start would).
PRELOAD = (
    "slm_desk.cli",
    "slm_desk.desk",
    "sklearn.linear_model",
    "sklearn.feature_extraction.text",
    "sklearn_crfsuite",
)


def _send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message)
    sock.sendall(struct.pack("!I", len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    def exactly(n: int) -> bytes:
        chunks = b""
        while len(chunks) < n:
            chunk = sock.recv(n - len(chunks))
            if not chunk:
                raise EOFError("the zygote closed its end")
            chunks += chunk
        return chunks

    (size,) = struct.unpack("!I", exactly(4))
    return pickle.loads(exactly(size))


def _run_child(request: dict[str, Any], control: socket.socket) -> None:
    """In the forked child: become `python -m MODULE ARGS` and never return."""
    control.close()
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, (path, flags) in enumerate(
            [(request["stdin"], os.O_RDONLY), (request["stdout"], os.O_WRONLY), (request["stderr"], os.O_WRONLY)]
        ):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["-m", *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
            traceback.print_exc()
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter joins non-daemon threads at exit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream: nothing more to say
                stream.flush()
        os._exit(code & 0xFF)


def serve(fd: int) -> None:
    """The zygote: import once, then fork one child per request and report its pid and exit status."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    control = socket.socket(fileno=fd)
    _send(control, "ready")
    while True:
        try:
            request = _receive(control)
        except EOFError:
            return
        pid = os.fork()
        if pid == 0:
            _run_child(request, control)
        _send(control, pid)
        _, status = os.waitpid(pid, 0)
        _send(control, os.waitstatus_to_exitcode(status))


@dataclass
class Done:
    returncode: int
    stdout: bytes
    stderr: bytes


class Zygote:
    """The test process's end: one zygote per test process, started on first use, one child at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ours, theirs = socket.socketpair()
        root = Path(__file__).resolve().parent.parent
        self.log = folder / "zygote.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"from tests.zygote import serve; serve({theirs.fileno()})"],
                pass_fds=[theirs.fileno()],
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        theirs.close()
        self.control = ours
        self.lock = threading.Lock()
        try:
            started = _receive(self.control)
        except EOFError:
            started = None
        if started != "ready":
            raise RuntimeError(f"the zygote did not start: {self.log.read_text(errors='replace')[-2000:]}")
        self.count = 0

    def run(self, args: list[str], stdin: bytes, env: dict[str, str], timeout: float, module: str = "slm_desk") -> Done:
        """`python -m MODULE ARGS` in a forked child: its exit status, stdout and stderr."""
        with self.lock:
            self.count += 1
            paths = {name: self.folder / f"{self.count}.{name}" for name in ("stdin", "stdout", "stderr")}
            paths["stdin"].write_bytes(stdin)
            for name in ("stdout", "stderr"):
                paths[name].write_bytes(b"")
            request = {"module": module, "args": args, "env": env, "cwd": os.getcwd()}
            request |= {name: str(path) for name, path in paths.items()}
            _send(self.control, request)
            pid = _receive(self.control)
            self.control.settimeout(timeout)
            try:
                code = _receive(self.control)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self.control.settimeout(None)
                _receive(self.control)
                raise subprocess.TimeoutExpired(["slm-desk", *args], timeout) from None
            finally:
                self.control.settimeout(None)
            done = Done(code, paths["stdout"].read_bytes(), paths["stderr"].read_bytes())
            for path in paths.values():
                path.unlink()
            return done

    def close(self) -> None:
        self.control.close()
        self.process.wait(timeout=30)
