"""Shared fixtures. Every test gets its own SLM_DESK_HOME, so nothing touches the real home folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# One BLAS thread per test process and per child: xdist already puts a test on each core, and the heads' small
# fits spent a fifth more CPU for no less time when OpenBLAS threads fought the other worker for the cores.
# Set before numpy loads (slm_desk imports it below); children inherit it through the environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Some machines (this one) set PYTHONDONTWRITEBYTECODE: then each of the suite's ~90 `slm-desk` children compiles
# the package from source again, a fifth of its start. Children cache bytecode in __pycache__, as Python does
# by default; the xdist workers, started after this file loads, inherit the same environment.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# llama.cpp's threads wait as the product makes them wait ([runtime] wait = "passive", models/threads.py): OpenMP
# reads the policy once, when llama_cpp first loads, and a test module importing it at collection (test_schema_guard)
# loaded it spinning for the whole run: beside two busy loops one runtime test then took 15 minutes and more.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from slm_desk.models.preload import NO_MODEL_ENV  # noqa: E402
from tests.zygote import Zygote  # noqa: E402

if TYPE_CHECKING:
    from slm_desk.desk import Desk

# Property tests judge rules, not speed: no per-example deadline, so a loaded CI machine cannot fail them.
settings.register_profile("slm-desk", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("slm-desk")

TASK_FILES = Path(__file__).parent / "task_files"


def first_items(pool: Path, n: int, into: Path) -> Path:
    """The first `n` items of a pool file (tests/data), written to `into`: enough to teach a head where a test
    needs one but does not measure it, and a third of the training time of the whole 600-item route-ticket pool."""
    into.write_text("".join(line + "\n" for line in pool.read_text(encoding="utf-8").splitlines()[:n]))
    return into


INVOICE_TICKET = "Customer reports duplicate charge on invoice INV-8821."


def model_lock(desk: Desk, task: str) -> threading.Lock:
    """The lock of the loaded model `task` runs on. A test that holds it is another user of the model, as
    calibration would be: a run started meanwhile stays in progress until the test lets go, on any machine (a
    fast one finished a 135M answer between two of Pilot's key presses)."""
    from slm_desk.models.backends import LlamaCppBackend

    backend = desk.cascade(task).small.backend
    assert isinstance(backend, LlamaCppBackend)  # the real bundled model
    return backend.lock


# Every notification each app showed, in order, as "title message". Textual drops a notification from
# app._notifications once its timeout passes, and on a loaded machine that can happen before a test reads it.
_SAID: weakref.WeakKeyDictionary[object, list[str]] = weakref.WeakKeyDictionary()


def messages(app: object) -> list[str]:
    """What `app` has notified so far, expired notifications included."""
    return list(_SAID.get(app, []))


@pytest.fixture(autouse=True)
def notifications_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every `notify` of a Textual app for `messages`. Only where the test's module has imported Textual:
    the headless core's tests never load it."""
    textual_app = sys.modules.get("textual.app")
    if textual_app is None:
        return
    show = textual_app.App.notify

    def kept(app: object, message: str, *, title: str = "", **kwargs: object) -> None:
        _SAID.setdefault(app, []).append(f"{title} {message}")
        show(app, message, title=title, **kwargs)

    monkeypatch.setattr(textual_app.App, "notify", kept)


@pytest.fixture(autouse=True)
def slm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "slm-home"
    monkeypatch.setenv("SLM_DESK_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # huggingface_hub caches files of its own there
    monkeypatch.delenv("SLM_DESK_DEBUG", raising=False)
    return home


def sigint_default() -> None:
    """For a child that a test will Ctrl-C: a shell's background job (`.ci/run &`) starts with SIGINT ignored,
    and a Python started so never raises KeyboardInterrupt. Restore what an interactive terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(*args: str, stderr: int = subprocess.PIPE, interruptible: bool = True) -> subprocess.Popen[bytes]:
    """The real `slm-desk` as a child a test writes to and signals (stdin, stdout and stderr piped), with SIGINT
    as a terminal gives it unless `interruptible` is off."""
    return subprocess.Popen(
        [sys.executable, "-m", "slm_desk", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=os.environ.copy(),
        preexec_fn=sigint_default if interruptible else None,
    )


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def envelopes(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines()]


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    warm = Zygote(tmp_path_factory.mktemp("zygote"))
    yield warm
    warm.close()


@pytest.fixture
def cli(slm_home: Path, zygote: Zygote):
    """Run the real `slm-desk` in a child process, as a user's shell would (`python -m slm_desk ARGS`, with the
    test's environment and working folder), forked from a zygote that has done the imports (tests/zygote.py)."""

    def run(*args: str, stdin: bytes | str | None = None, timeout: float = 300) -> CliResult:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        # SLM_DESK_HOME as the test has it now (slm_home unless it moved it)
        done = zygote.run(list(args), data if data is not None else b"", os.environ.copy(), timeout)
        stderr = done.stderr.decode()
        if f"{NO_MODEL_ENV} is set" in stderr:  # the child refused to load a model: say so, never pass vacuously
            pytest.fail(f"slm-desk {' '.join(args)} loads a model: mark the test `model`")
        return CliResult(done.returncode, done.stdout.decode(), stderr)

    return run


@pytest.fixture
def user_task(slm_home: Path):
    """Install a task file from tests/task_files into the user's tasks folder."""

    def install(name: str, as_name: str | None = None) -> Path:
        from slm_desk import locations

        target = locations.user_tasks_dir() / f"{as_name or name}.toml"
        shutil.copy(TASK_FILES / f"{name}.toml", target)
        return target

    return install


@pytest.fixture(scope="session")
def backend() -> Iterator[object]:
    """The bundled model, loaded once for the in-process tests (the same one the app's desk would share)."""
    from slm_desk.data.catalog import BUNDLED_ID, resolve_model
    from slm_desk.data.config import RuntimeConfig
    from slm_desk.models import backends

    yield backends.local(resolve_model(BUNDLED_ID), RuntimeConfig())


@pytest.fixture(scope="session")
def engine(backend) -> Iterator[object]:
    """The bundled model's engine, for tests of the runtime itself."""
    yield backend.engine


@pytest.hookimpl(tryfirst=True)  # before the fixtures of the test, a module's and the session's included
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The fast tier (`pytest -m "not model"`) never loads a model: a test not marked `model` that loads one, in
    this process or a child, in its own fixtures or in a module's, fails with "mark the test `model`"."""
    if item.get_closest_marker("model") is None:
        os.environ[NO_MODEL_ENV] = "1"
    else:
        os.environ.pop(NO_MODEL_ENV, None)
