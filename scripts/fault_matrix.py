"""The fault matrix: every face of slm-desk under every fault a desk meets, each case a real process on a copy of
one taught home, and random key bursts into the real app in tmux.

    .venv/bin/python scripts/fault_matrix.py                  # the whole matrix and 4 bursts (about 8 minutes)
    .venv/bin/python scripts/fault_matrix.py --only sigint    # the cases whose name holds a word
    .venv/bin/python scripts/fault_matrix.py --bursts 0 --json matrix.json

Faces: `run` on one `--input` (the head answers) and on a `--jsonl` batch, `run` where the bundled model answers,
plain text on stdin, `review`, `examples list`, `tasks`, `models`, `paths` and `doctor`. Faults: Ctrl-C and SIGTERM
at moments from the interpreter's start to the answers; a history database damaged five ways; an unreadable, broken
or mistyped config.toml; SLM_DESK_HOME a file; stdout closed by its reader or on a full disk; stdin empty, binary or
a megabyte long; an ASCII-only locale, a dumb terminal, no HOME; two processes at once on one home.

A case holds when its exit status is the face's own (what it gives with no fault) or the one the fault must give
(130 for Ctrl-C, 143 for SIGTERM, 2 with the fix named for a damaged file, 141 for a reader that left), stderr
says the named error where the status changed, and nothing prints a traceback or "internal error". A burst run
holds when the app is alive after every burst and ctrl+q then exits 0. Exit status 0 only when everything held.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from key_bursts import SLM_DESK, Outcome, bursts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POOL = ROOT / "tests" / "data" / "route-ticket.pool.jsonl"
QUERIES = [
    "where is my card",
    "I was charged twice for the same coffee",
    "how do I change my PIN",
    "my transfer has not arrived after three days",
    "can I get a virtual card",
]
LINES = "".join(q + "\n" for q in QUERIES).encode()
TIMEOUT_S = 180


@dataclass(frozen=True)
class Face:
    name: str
    args: tuple[str, ...]
    stdin: bytes = b""
    reads_stdin: bool = False
    batch: bool = False  # --jsonl: an empty stdin is an empty batch, not an empty input
    history: bool = False  # reads or writes the history database


FACES = (
    Face("run-input", ("run", "route-ticket", "--input", QUERIES[0]), history=True),
    Face("run-jsonl", ("run", "route-ticket", "--jsonl"), LINES, reads_stdin=True, batch=True, history=True),
    Face(
        "run-model",
        ("run", "extract-ticket", "--input", "Refund invoice INV-8821 please, charged twice."),
        history=True,
    ),
    Face("run-stdin", ("run", "route-ticket"), QUERIES[1].encode(), reads_stdin=True, history=True),
    Face("review", ("review",), history=True),
    Face("examples", ("examples", "list", "route-ticket"), history=True),
    Face("tasks", ("tasks",)),
    Face("models", ("models",)),
    Face("paths", ("paths", "--json")),
    Face("doctor", ("doctor",)),
)


@dataclass(frozen=True)
class Fault:
    name: str
    damage: Callable[[Path], None] | None = None  # done to the case's own copy of the home
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets
    signal: int | None = None
    delay_s: float = 0.0
    stdout: str = "pipe"  # "pipe", "closed" (the reader left at once) or "full" (/dev/full)
    stdin: bytes | None = None  # replaces a stdin face's input
    exits: frozenset[int] = frozenset()  # the statuses this fault may give beside the face's own
    says: str = ""  # what stderr names when the status is not the face's own
    only: Callable[[Face], bool] = lambda face: True
    twice: bool = False  # two processes at once on the one home


def _db(home: Path) -> Path:
    return home / "data" / "history.sqlite3"


def _mode(path_of: Callable[[Path], Path], mode: int) -> Callable[[Path], None]:
    def damage(home: Path) -> None:
        path = path_of(home)
        if not path.exists():
            path.write_text("")
        path.chmod(mode)

    return damage


def _replace(path_of: Callable[[Path], Path], how: str) -> Callable[[Path], None]:
    def damage(home: Path) -> None:
        path = path_of(home)
        path.unlink(missing_ok=True)
        for side in path.parent.glob(path.name + "-*"):
            side.unlink()
        if how == "folder":
            path.mkdir()
        elif how == "random":
            path.write_bytes(random.Random(7).randbytes(8192))
        else:
            path.write_text(how)

    return damage


def _immutable(home: Path) -> None:
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(_db(home))], capture_output=True).returncode
    ):
        raise Skipped("this file system cannot make a file immutable")


def _config(home: Path) -> Path:
    return home / "config" / "config.toml"


def _home_a_file(home: Path) -> None:
    shutil.rmtree(home)
    home.write_text("not a folder\n")


class Skipped(Exception):
    """This machine cannot make the fault (chattr on a file system without it)."""


def faults() -> list[Fault]:
    found: list[Fault] = [Fault("none")]
    for delay in (0.03, 0.06, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6, 1.0, 2.0):
        found.append(
            Fault(f"sigint@{delay}s", signal=signal.SIGINT, delay_s=delay, exits=frozenset({130}), says="interrupted")
        )
    for delay in (0.1, 0.3, 1.0):
        # before slm-desk sets its SIGTERM handler the signal ends the process as it does any program (-15)
        found.append(
            Fault(f"sigterm@{delay}s", signal=signal.SIGTERM, delay_s=delay, exits=frozenset({143, -signal.SIGTERM}))
        )
    history = lambda face: face.history  # noqa: E731
    named = "cannot use the history database"
    found += [
        Fault("db-mode-000", _mode(_db, 0o000), exits=frozenset({2}), says=named, only=history),
        Fault("db-read-only", _mode(_db, 0o400), exits=frozenset({2}), says=named, only=history),
        Fault("db-random-bytes", _replace(_db, "random"), exits=frozenset({2}), says=named, only=history),
        Fault("db-a-folder", _replace(_db, "folder"), exits=frozenset({2}), says=named, only=history),
        Fault("db-immutable", _immutable, exits=frozenset({2}), says=named, only=history),
        Fault("config-not-toml", _replace(_config, "[runtime\nthreads = \n"), exits=frozenset({2}), says="config.toml"),
        Fault(
            "config-wrong-type",
            _replace(_config, '[runtime]\nthreads = "many"\n'),
            exits=frozenset({2}),
            says="config.toml",
        ),
        Fault("config-mode-000", _mode(_config, 0o000), exits=frozenset({2}), says="config.toml"),
        Fault("home-a-file", _home_a_file, exits=frozenset({2}), says="SLM_DESK_HOME"),
        Fault("stdout-closed", stdout="closed", exits=frozenset({141})),
        Fault("stdout-disk-full", stdout="full", exits=frozenset({2}), says="No space left"),
        Fault(
            "stdin-empty",
            stdin=b"",
            exits=frozenset({2}),
            says="empty",
            only=lambda face: face.reads_stdin and not face.batch,
        ),
        Fault("stdin-empty-batch", stdin=b"", exits=frozenset({0}), says="0 inputs", only=lambda face: face.batch),
        Fault("stdin-binary", stdin=bytes(range(256)) * 8, exits=frozenset({2}), only=lambda face: face.reads_stdin),
        Fault(
            "stdin-a-megabyte",
            stdin=(QUERIES[2] + " ").encode() * 40_000 + b"\n",
            exits=frozenset({2, 3, 4}),
            only=lambda face: face.reads_stdin,
        ),
        Fault("locale-ascii", env={"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}),
        Fault("term-dumb", env={"TERM": "dumb", "NO_COLOR": "1", "COLUMNS": "20"}),
        Fault("no-home-env", env={"HOME": None}),
        Fault("two-at-once", twice=True),
    ]
    return found


def _child_env(home: Path, fault: Fault) -> dict[str, str]:
    env = {**os.environ, "SLM_DESK_HOME": str(home), "HF_HOME": str(home.parent / "hf")}
    env.pop("SLM_DESK_DEBUG", None)
    for key, value in fault.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _restore_sigint() -> None:
    """A background job starts with SIGINT ignored; a terminal's Ctrl-C reaches a program that did not ask so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(face: Face, fault: Fault, home: Path) -> tuple[subprocess.Popen[bytes], float]:
    stdout = open("/dev/full", "wb") if fault.stdout == "full" else subprocess.PIPE  # noqa: SIM115
    child = subprocess.Popen(
        [*SLM_DESK, *face.args],
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=_child_env(home, fault),
        cwd=home.parent,
        preexec_fn=_restore_sigint,
    )
    started = time.monotonic()
    if fault.stdout == "closed":
        child.stdout.close()  # type: ignore[union-attr]
    elif fault.stdout == "full":
        stdout.close()  # type: ignore[union-attr]  # the child holds its own copy
    return child, started


def _finish(
    child: subprocess.Popen[bytes], started: float, face: Face, fault: Fault
) -> tuple[int | None, bytes, bytes, float]:
    """The exit status, stdout, stderr and seconds of one child, the fault's signal sent on time."""
    stdin = fault.stdin if fault.stdin is not None and face.reads_stdin else face.stdin
    if fault.signal is not None:
        time.sleep(max(0.0, fault.delay_s - (time.monotonic() - started)))
        child.send_signal(fault.signal)
    stdout = b""
    try:
        if fault.stdout == "closed":
            child.stdin.write(stdin)  # type: ignore[union-attr]
            child.stdin.close()  # type: ignore[union-attr]
            stderr = child.stderr.read()  # type: ignore[union-attr]
            child.wait(timeout=TIMEOUT_S)
        else:
            stdout, stderr = child.communicate(stdin, timeout=TIMEOUT_S)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        if child.poll() is None:
            child.kill()
            child.wait()
            return None, b"", b"", time.monotonic() - started
        stderr = child.stderr.read() if child.stderr and not child.stderr.closed else b""
    return child.returncode, stdout or b"", stderr, time.monotonic() - started


def before_slm_desk(fault: Fault, status: int | None, stdout: bytes, stderr: str) -> bool:
    """A Ctrl-C that came while the interpreter itself was still starting, before the first line of slm-desk ran:
    Python's own handler answers it, as it does for every Python program (nothing printed, no slm-desk frame; exit 1
    with "Could not import runpy module" when it lands in the interpreter's own import of `python -m`'s runner)."""
    if fault.signal != signal.SIGINT or stdout or "slm_desk" in stderr:
        return False
    return status == -signal.SIGINT or (status == 1 and stderr.rstrip().endswith("KeyboardInterrupt"))


def judge(face: Face, fault: Fault, own: int | None, status: int | None, stderr: str) -> str:
    """What went wrong in one case, or ""."""
    if status is None:
        return f"still running after {TIMEOUT_S} s"
    for never in ("Traceback", "internal error", "Exception ignored", "Fatal Python error"):
        if never in stderr:
            return f"stderr holds {never!r}"
    if status == own:
        return ""
    if status not in fault.exits:
        return f"exit status {status}: expected {sorted({own, *fault.exits}, key=str)}"
    if status not in (-signal.SIGTERM, 141, 3, 4) and not stderr.strip():  # 3 and 4: the envelope says why
        return f"exit status {status} with nothing on stderr"
    if fault.says and fault.says not in stderr:
        return f"exit status {status} without saying {fault.says!r}"
    return ""


def run_case(face: Face, fault: Fault, seed_home: Path, own: int | None) -> Outcome:
    case = f"{face.name} / {fault.name}"
    with tempfile.TemporaryDirectory(prefix="slm-desk-fault-") as scratch:
        home = Path(scratch) / "home"
        shutil.copytree(seed_home, home, symlinks=True)
        try:
            if fault.damage:
                fault.damage(home)
        except Skipped as why:
            return Outcome(case, None, 0.0, skipped=str(why))
        try:
            children = [_start(face, fault, home) for _ in range(2 if fault.twice else 1)]
            results = [_finish(child, started, face, fault) for child, started in children]
        finally:
            if fault.damage is _immutable:
                subprocess.run(["chattr", "-i", str(_db(home))], capture_output=True)
            for path in (home, _db(home), _config(home)):  # let the scratch folder be removed
                if path.exists() and not path.is_symlink():
                    path.chmod(0o700)
    problems = []
    for status, stdout, stderr, _ in results:
        said = stderr.decode(errors="replace")
        if before_slm_desk(fault, status, stdout, said):
            return Outcome(case, status, 0.0, skipped="the Ctrl-C came before slm-desk's first line ran")
        if problem := judge(face, fault, own, status, said):
            problems.append(problem)
    status, _, stderr, seconds = results[0]
    tail = "\n".join(stderr.decode(errors="replace").strip().splitlines()[-6:])
    return Outcome(case, status, round(seconds, 2), "; ".join(problems), tail)


def seed_home(where: Path) -> Path:
    """A home as a user's looks after a day: route-ticket taught from a pool and trained, answers in the history
    and in the review queue."""
    home = where / "home"
    env = {**os.environ, "SLM_DESK_HOME": str(home), "HF_HOME": str(where / "hf")}
    steps = [
        (["examples", "add", "route-ticket", str(POOL)], b""),
        (["train", "route-ticket"], b""),
        (["run", "route-ticket", "--jsonl"], LINES * 4),
        (["run", "extract-ticket", "--input", "Refund invoice INV-8821 please."], b""),
    ]
    for args, stdin in steps:
        print(f"  seed: slm-desk {' '.join(args)}", flush=True)
        done = subprocess.run([*SLM_DESK, *args], input=stdin, capture_output=True, env=env)
        if done.returncode not in (0, 3, 4):
            raise SystemExit(f"seeding failed: slm-desk {' '.join(args)} -> {done.returncode}\n{done.stderr.decode()}")
    return home


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="run the cases whose 'face / fault' name holds this text")
    parser.add_argument("--workers", type=int, default=2, help="cases at once (default 2, one per core here)")
    parser.add_argument("--bursts", type=int, default=4, help="tmux burst runs (default 4; 0 for none)")
    parser.add_argument("--rounds", type=int, default=150, help="bursts in each tmux run (default 150)")
    parser.add_argument("--json", type=Path, help="also write every outcome to this file")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="slm-desk-matrix-") as scratch:
        print("seeding a taught home", flush=True)
        home = seed_home(Path(scratch))
        cases = [
            (face, fault)
            for fault in faults()
            for face in FACES
            if fault.only(face) and options.only in f"{face.name} / {fault.name}"
        ]
        with ThreadPoolExecutor(options.workers) as pool:
            own = dict(
                zip(FACES, pool.map(lambda face: run_case(face, Fault("none"), home, None).status, FACES), strict=True)
            )
            print("each face's own exit status: " + ", ".join(f"{f.name} {s}" for f, s in own.items()), flush=True)
            outcomes = []
            for number, outcome in enumerate(pool.map(lambda c: run_case(c[0], c[1], home, own[c[0]]), cases), 1):
                outcomes.append(outcome)
                mark = "skip" if outcome.skipped else ("FAIL" if outcome.problem else "ok")
                print(
                    f"[{number}/{len(cases)}] {mark:4} {outcome.case}: exit {outcome.status}, {outcome.seconds} s"
                    + (f" - {outcome.problem}\n    {outcome.stderr_tail}" if outcome.problem else ""),
                    flush=True,
                )
        for seed in range(options.bursts):
            outcome = bursts(seed, options.rounds, home)
            outcomes.append(outcome)
            print(
                f"{'FAIL' if outcome.problem else 'ok':4} {outcome.case}: exit {outcome.status}, {outcome.seconds} s"
                + (f" - {outcome.problem}\n{outcome.stderr_tail}" if outcome.problem else ""),
                flush=True,
            )
    failed = [o for o in outcomes if o.problem]
    skipped = [o for o in outcomes if o.skipped]
    print(
        f"\n{len(outcomes)} cases: {len(outcomes) - len(failed) - len(skipped)} held, {len(failed)} failed, "
        f"{len(skipped)} skipped" + (f" ({skipped[0].skipped})" if skipped else "")
    )
    for outcome in failed:
        print(f"  FAILED {outcome.case}: {outcome.problem}")
    if options.json:
        options.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
