"""Progress for long work (downloads, training): a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


class ByteProgress:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.first: int | None = None
        self.last_step = -1
        self.last_draw = 0.0

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
        if self.live:
            if now - self.last_draw >= 0.1 or (total and done >= total):
                width = 20
                bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
                line = f"[{bar}] {text}"[: shutil.get_terminal_size().columns - 1]
                self.stream.write(f"\r{line}\x1b[K")
                self.stream.flush()
                self.last_draw = now
        else:
            step = int(fraction * 10)
            if step > self.last_step:
                self.stream.write(text + "\n")
                self.stream.flush()
                self.last_step = step

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class StepProgress:
    """Training steps with the loss and an ETA: a live bar on a terminal, a plain line every 5 % otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.last_step = -1
        self.last_draw = 0.0
        self.smoothed: float | None = None

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        elapsed = now - self.started
        eta = elapsed / step * (total - step) if step else 0.0
        fraction = step / total if total else 1.0
        text = f"step {step}/{total} loss {self.smoothed:.3f} {_duration(elapsed)} ETA {_duration(eta)} {self.label}"
        if self.live:
            if now - self.last_draw >= 0.2 or step >= total:
                width = 20
                bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
                line = f"[{bar}] {text}"[: shutil.get_terminal_size().columns - 1]
                self.stream.write(f"\r{line}\x1b[K")
                self.stream.flush()
                self.last_draw = now
        else:
            tick = int(fraction * 20)
            if tick > self.last_step:
                self.stream.write(text + "\n")
                self.stream.flush()
                self.last_step = tick

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
