"""Hold Ctrl-C (and SIGTERM) across a step that must not be cut in half, then deliver it.

Two such steps: printing and recording a batch of envelopes (a printed line always has its history row), and
loading a model (llama.cpp calls back into Python while it loads; a KeyboardInterrupt raised inside that callback
is swallowed by ctypes, and the batch would go on as if Ctrl-C had never been pressed). And one that cannot be
held: a Ctrl-C that lands in a finalizer during the imports is swallowed too, so the handler `install` sets
remembers every one, and `check` raises it again at the next safe point.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the same code stops cleanly and says what was done."""


_received: list[int] = []  # every SIGINT/SIGTERM our handlers saw, swallowed or not
_report_unraisable = sys.unraisablehook


def _on_sigint(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _raise_terminated(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated


def install() -> None:
    """Ctrl-C raises KeyboardInterrupt as Python's own handler does, and is also remembered: one that arrives
    while Python runs a finalizer or a C callback is printed as "Exception ignored" and lost, and `check` brings
    it back at the next safe point (main thread only)."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _unraisable:
        global _report_unraisable
        _report_unraisable = sys.unraisablehook
        sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    """A Ctrl-C raised where Python cannot raise it (a finalizer, a C callback) is printed as "Exception ignored"
    with a traceback; it is remembered (`check` raises it at the next safe point), so it is not printed."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received:
        return
    _report_unraisable(unraisable)


def terminate_like_interrupt() -> None:
    """From now on SIGTERM stops this process the way Ctrl-C does (main thread only)."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _raise_terminated)


def pending() -> bool:
    """Whether a Ctrl-C (or SIGTERM) has arrived: an error raised after it, anywhere, is its consequence (pydantic
    turns an interrupt inside schema building into a SchemaError), and the process ends as interrupted."""
    return bool(_received)


def terminated() -> bool:
    """Whether the signal that arrived was SIGTERM (exit 143, "terminated") rather than Ctrl-C."""
    return signal.SIGTERM in _received


def check() -> None:
    """Raise the interrupt a swallowed Ctrl-C (or SIGTERM) should have raised; nothing when there was none."""
    if signal.SIGTERM in _received:
        raise Terminated
    if signal.SIGINT in _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Signals that arrive inside are delivered on the way out, to whatever handled them before (main thread only:
    elsewhere there is nothing to hold)."""
    received: list[int] = []
    try:
        previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in HELD}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(received):  # each once, in the order they came
            signal.raise_signal(signum)


HELD = (signal.SIGINT, signal.SIGTERM)
