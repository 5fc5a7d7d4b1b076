"""`python -m slm_desk` and the `slm-desk` command: the Ctrl-C handler first, then the CLI's imports inside the
handling, so a Ctrl-C at any moment of start-up exits 130 with one line, never a traceback."""

from __future__ import annotations

import os
import sys

from slm_desk import interrupts

interrupts.install()  # first of all: a Ctrl-C during the imports below is remembered even if a finalizer eats it

INTERRUPTED = 130  # exit_codes.INTERRUPTED: that module is not imported yet when a Ctrl-C stops the imports


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
    return _ended(main())


def _ended(code: int) -> int:
    """An interrupted process ends here, with its code. A Ctrl-C that landed in code a C extension ran for Python
    (its module's start) sets CPython's "unhandled interrupt" mark, and the interpreter would then kill itself by
    SIGINT at exit whatever code it was given; everything printed is flushed, and the store commits as it goes."""
    if code in (INTERRUPTED, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(entry())
