"""Progress for long work (downloads, training): a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Bar:
    """Redraws one line in place on a terminal (at most every `interval` s); elsewhere, as in a log or CI, prints a
    plain line each time another 1/`ticks` of the work is done."""

    def __init__(self, stream: TextIO | None, ticks: int, interval: float) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.ticks = ticks
        self.interval = interval
        self.last_tick = -1
        self.last_draw = 0.0

    def draw(self, fraction: float, text: str, final: bool) -> None:
        now = time.monotonic()
        if self.live:
            if now - self.last_draw >= self.interval or final:
                width = 20
                bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
                line = f"[{bar}] {text}"[: shutil.get_terminal_size().columns - 1]
                self.stream.write(f"\r{line}\x1b[K")
                self.stream.flush()
                self.last_draw = now
        else:
            tick = int(fraction * self.ticks)
            if tick > self.last_tick:
                self.stream.write(text + "\n")
                self.stream.flush()
                self.last_tick = tick

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


class ByteProgress(_Bar):
    """Bytes of a download with speed and ETA."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        super().__init__(stream, ticks=10, interval=0.1)
        self.label = label
        self.started = time.monotonic()
        self.first: int | None = None

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done  # bytes resumed from an earlier run do not count towards speed
            self.started = now
        elapsed = max(now - self.started, 1e-6)
        speed = (done - self.first) / elapsed
        if total:
            fraction = min(done / total, 1.0)
            eta = (total - done) / speed if speed > 0 else float("inf")
            eta_text = f"ETA {eta:,.0f}s" if eta != float("inf") else "ETA ?"
            text = f"{fraction:6.1%} {done / 2**20:,.1f}/{_mib(total)} {_mib(speed)}/s {eta_text} {self.label}"
        else:
            fraction, text = 0.0, f"{_mib(done)} {_mib(speed)}/s {self.label}"
        self.draw(fraction, text, final=bool(total and done >= total))


class StepProgress(_Bar):
    """Training steps with the (smoothed) loss, the time so far and an ETA."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        super().__init__(stream, ticks=20, interval=0.2)
        self.label = label
        self.started = time.monotonic()
        self.smoothed: float | None = None
        self.first_step: float | None = None  # the ETA counts from here: loading the model is not a step

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        if self.first_step is None:
            self.first_step = now
        eta = _duration((now - self.first_step) / (step - 1) * (total - step)) if step > 1 else "?"
        text = f"step {step}/{total} loss {self.smoothed:.3f} {_duration(now - self.started)} ETA {eta} {self.label}"
        self.draw(step / total if total else 1.0, text, final=step >= total)


class ItemProgress(_Bar):
    """Items done of a total, with the time so far and an ETA (a model answering held-out items)."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        super().__init__(stream, ticks=10, interval=0.2)
        self.label = label
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        eta = _duration(elapsed / done * (total - done)) if done else "?"
        text = f"{done}/{total} {self.label} {_duration(elapsed)} ETA {eta}"
        self.draw(done / total if total else 1.0, text, final=done >= total)
