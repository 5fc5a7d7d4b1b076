"""`python -m slm_desk` and the `slm-desk` command: the Ctrl-C handler first, then the CLI's imports inside the
handling, so a Ctrl-C at any moment of start-up exits 130 with one line, never a traceback."""

from __future__ import annotations

import os
import sys

INTERRUPTED, TERMINATED = 130, 143  # exit_codes' own: that module is not imported yet when a Ctrl-C stops the imports

try:  # from this module's first line: a Ctrl-C while the handler itself is imported is caught too
    from slm_desk import interrupts

    interrupts.install()  # a Ctrl-C during the imports below is remembered even if a finalizer eats it
except KeyboardInterrupt:
    print("slm-desk: interrupted", file=sys.stderr)
    os._exit(INTERRUPTED)

import contextlib  # noqa: E402  (interrupts imported both: nothing left to interrupt)
import signal  # noqa: E402


def entry() -> int:
    """The console script. Importing the CLI builds pydantic schemas, which turn a Ctrl-C that lands inside them
    into their own error (a SchemaError): any exception while a Ctrl-C is pending is the Ctrl-C."""
    try:
        from slm_desk.cli import main
    except BaseException:
        if not interrupts.pending():
            raise
        print("slm-desk: interrupted", file=sys.stderr)
        return _ended(INTERRUPTED)
    try:
        code = main()
    except KeyboardInterrupt:  # landed after the command had ended, before `_ended` put the handlers down
        code = TERMINATED if interrupts.terminated() else INTERRUPTED
    return _ended(code)


def _ended(code: int) -> int:
    """The command is over: a signal from now on changes nothing. An interrupted process ends here, with its code:
    a Ctrl-C that landed in code a C extension ran for Python (its module's start, a finalizer) sets CPython's
    "unhandled interrupt" mark, and the interpreter would then kill itself by SIGINT at exit whatever code it was
    given. Everything printed is flushed, and the store commits as it goes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if code in (INTERRUPTED, TERMINATED) or interrupts.pending():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader that left, a full disk: said already
                stream.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(entry())
