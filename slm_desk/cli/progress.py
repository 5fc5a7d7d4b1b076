"""Byte progress for long transfers: a live bar on a terminal, a plain line every 10 % otherwise."""

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
