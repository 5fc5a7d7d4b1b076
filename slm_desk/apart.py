"""Training in a process of its own, for the app: the screen stays live while a head fits.

`Desk.train` in one of the app's threads shares the interpreter lock with the event loop: fitting a head on the
banking77 pool (9,693 items) stalled the loop for up to 0.75 s, and a screen switch took up to 0.75 s (0.13 s
quiet). Here the training runs in a fresh interpreter (`python -m slm_desk.apart`: nothing of the app is copied
into it) with the same config and `SLM_DESK_HOME`, at a lower CPU priority, and tells the caller each step as the
CLI would: `said` lines, `steps` and `answered` counts, one JSON line each on the child's stdout. A cancel asks the
child, on its stdin, to stop at its next step (the head is then unchanged, or saved with the policy measured before,
as `Desk.train` says); the child also stops when its stdin closes (the app is gone). One that has not stopped
`STOP_S` after it was asked is killed: a fit's steps are too long to wait for (quitting during a train waited 20 s
for a fold to end), and the store saves a head whole or not at all. The child's own output (llama.cpp's lines,
warnings) goes to `logs/train.log`. What comes back is what the app shows of a training: an `Outcome`.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any

from slm_desk import errors, locations
from slm_desk.contract.tasks import Task
from slm_desk.data.config import Config
from slm_desk.errors import Cancelled, SlmDeskError

STOP_S = 2.0  # a cancelled child that has not stopped by then is killed (a quit waits no longer than this)
NICE = 5  # the training is background work: the app's screen comes first
STOP = "stop"


@dataclass(frozen=True)
class Outcome:
    """What the app shows of a training: the head's size and held-out accuracy, and where it hands on."""

    n_train: int
    heldout_accuracy: float
    model: str  # the next tier measured ("" if none)
    measured: int  # on how many items
    note: str  # why the next tier was not measured, when it was not
    interrupted: bool  # the comparison was stopped: the policy measured before is kept


def train(
    config: Config,
    task: Task,
    compare: int | None = 0,
    keep_policy: bool = False,
    said: Callable[[str], None] | None = None,
    answered: Callable[[int, int], None] | None = None,
    steps: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Outcome:
    """`Desk(config).train(task, ...)` in a child process; the callbacks run here, in the caller's thread. A callback
    that raises (`said` raising `Cancelled`) stops the child, and is raised here."""
    with (locations.log_dir() / "train.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "slm_desk.apart"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            encoding="utf-8",
        )
    assert child.stdin is not None and child.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read, args=(child.stdout, lines), name="training child", daemon=True).start()
    asked_to_stop: float | None = None  # when

    def stop() -> None:
        nonlocal asked_to_stop
        if asked_to_stop is None:
            asked_to_stop = time.monotonic()
            _tell(child, STOP)

    try:
        _tell(child, base64.b64encode(pickle.dumps((config, task.name, compare, keep_policy))).decode())
        while True:
            if cancelled is not None and cancelled():
                stop()
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if asked_to_stop is not None and time.monotonic() - asked_to_stop > STOP_S:
                    raise Cancelled() from None  # still in a long step: killed below (a head is saved whole or not)
                continue
            if line is None:  # stdout closed without an answer
                raise RuntimeError(f"the training process ended without a word (exit status {child.wait()})")
            kind, *value = json.loads(line)
            if kind == "said" and said is not None:
                said(value[0])
            elif kind == "steps" and steps is not None:
                steps(*value)
            elif kind == "answered" and answered is not None:
                answered(*value)
            elif kind == "done":
                return Outcome(**value[0])
            elif kind == "cancelled":
                raise Cancelled()
            elif kind == "refused":
                name, message, hint = value
                error = getattr(errors, name, SlmDeskError)
                raise (error if isinstance(error, type) and issubclass(error, SlmDeskError) else SlmDeskError)(
                    message, hint
                )
            elif kind == "failed":
                raise RuntimeError(f"the training process failed:\n{value[0]}")
    finally:
        stop()
        try:
            child.wait(STOP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _tell(child: subprocess.Popen[str], line: str) -> None:
    try:
        assert child.stdin is not None
        child.stdin.write(line + "\n")
        child.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):  # it has already stopped
        pass


def _read(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        if line.strip():
            lines.put(line)
    lines.put(None)


def main() -> None:  # pragma: no cover - runs in the child process (the tests see what it sends)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the app's to handle, not the child's
    os.nice(NICE)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)  # the answers' own channel
    os.dup2(2, 1)  # whatever else writes to stdout goes to the log with stderr
    config, name, compare, keep_policy = pickle.loads(base64.b64decode(sys.stdin.readline()))
    stopped = threading.Event()

    def listen() -> None:  # "stop", or stdin closed (the app is gone): stop at the next step
        for line in sys.stdin:
            if line.strip() == STOP:
                break
        stopped.set()

    threading.Thread(target=listen, daemon=True).start()

    def send(*message: Any) -> None:
        out.write(json.dumps(message) + "\n")

    def said(line: str) -> None:  # between steps: where a cancel takes effect
        if stopped.is_set():
            raise Cancelled()
        send("said", line)

    from slm_desk.contract.tasks import load_task
    from slm_desk.desk import Desk

    desk = Desk(config)
    try:
        training = desk.train(
            load_task(name),  # as the app read it (a task holds validators that do not pickle)
            compare=compare,
            keep_policy=keep_policy,
            said=said,
            answered=lambda done, total: send("answered", done, total),
            steps=lambda done, total: send("steps", done, total),
            cancelled=stopped.is_set,
        )
        report, policy = training.trained.report, training.policy
        outcome = Outcome(
            report.n_train, report.heldout_accuracy, policy.model, policy.measured, policy.note, training.interrupted
        )
        send("done", asdict(outcome))
    except Cancelled:
        send("cancelled")
    except SlmDeskError as exc:
        send("refused", type(exc).__name__, exc.message, exc.hint)
    except BaseException:
        import traceback

        send("failed", traceback.format_exc())
    finally:
        desk.close()


if __name__ == "__main__":  # pragma: no cover
    main()
