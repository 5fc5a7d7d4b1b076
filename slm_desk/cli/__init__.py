"""The `slm-desk` command. Each subcommand is a thin face over the core; heavy imports happen inside them."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import threading
from collections.abc import Sequence

from slm_desk import __version__, exit_codes
from slm_desk.cli import evaluation, info, models, quality, run, teach, tune
from slm_desk.errors import SlmDeskError

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a write failed because the disk (or the quota) is full

DESCRIPTION = """\
Small local language models for narrow, high-volume jobs: the model answers in a task's JSON contract,
code validates the answer, and anything not clearly right is marked for escalation or review.
A bare `slm-desk` opens the terminal app.

examples:
  echo "Customer reports duplicate charge on invoice INV-8821." | slm-desk run extract-ticket
  slm-desk run route-ticket --input "I don't recognise a payment on my card"
  slm-desk tasks
  slm-desk models
  slm-desk pull qwen2.5-1.5b
  slm-desk tune extract-booking          # fine-tune on the task's examples (the [tune] extra)
  slm-desk doctor
"""


def _add_ui(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = commands.add_parser(
        "ui",
        help="open the terminal app (what a bare `slm-desk` does)",
        description="The Textual app: Run (F1), History (F2), Review (F3), Models (F4), Teach (F5), "
        "Calibration (F6), Settings (F7); ctrl+p opens the command palette, ctrl+q quits.",
    )
    ui.add_argument("--task", help="the task the Run, Teach and Calibration screens open on")
    ui.set_defaults(handler=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print("slm-desk: the app needs a terminal; for pipes use `slm-desk run TASK` (see --help)", file=sys.stderr)
        return exit_codes.USAGE
    from slm_desk.tui import run_app

    return run_app(args.task)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slm-desk", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"slm-desk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_ui(commands)
    run.add_parser(commands)
    models.add_parsers(commands)
    quality.add_parsers(commands)
    evaluation.add_parsers(commands)
    teach.add_parsers(commands)
    tune.add_parsers(commands)
    info.add_parsers(commands)
    return parser


def _leave(code: int) -> int:
    """Interrupted with a model call still running in a worker thread (a hung server): end now, as Ctrl-C
    promises, instead of letting the interpreter wait for that thread at exit. Everything printed is recorded."""
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if code in (130, 143) and busy:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _stopped(terminated: bool) -> int:
    print(f"slm-desk: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return _leave(exit_codes.TERMINATED if terminated else exit_codes.INTERRUPTED)


def _disk_full(exc: OSError) -> int:
    run.quiet_stdout()  # what is still buffered cannot be written either, and the final flush must stay quiet
    print(f"slm-desk: error: {exc.strerror} writing {exc.filename or 'the output'}", file=sys.stderr)
    print("  hint: free some space where it goes (or send it elsewhere) and run again", file=sys.stderr)
    return exit_codes.USAGE


def main(argv: Sequence[str] | None = None) -> int:
    from slm_desk import interrupts

    interrupts.install()  # before the heavy imports, where a Ctrl-C can land in a finalizer and be swallowed
    for stream in (sys.stdout, sys.stderr):  # a pool's "£" on an ASCII-only terminal: shown escaped, not a crash
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    try:
        parser = build_parser()  # a Ctrl-C here is as much an interrupt as one during the command
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["ui"])
        return _leave(int(args.handler(args)))
    except SlmDeskError as exc:
        print(f"slm-desk: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM before a command's own handling (a model still loading)
        return _stopped(isinstance(exc, interrupts.Terminated))
    except BrokenPipeError:  # `slm-desk ... | head`: the reader had enough; exit quietly as SIGPIPE would
        run.quiet_stdout()
        return exit_codes.BROKEN_PIPE
    except UnicodeDecodeError as exc:  # a task or config file that is not UTF-8
        print(f"slm-desk: error: a file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        print("  hint: save the task file or config.toml as UTF-8", file=sys.stderr)
        return exit_codes.USAGE
    except Exception as exc:  # a bug: say so plainly; the traceback is one variable away
        if interrupts.pending():  # raised because of a Ctrl-C (a library turned it into its own error)
            return _stopped(interrupts.terminated())
        if isinstance(exc, OSError) and exc.errno in FULL:
            return _disk_full(exc)
        if os.environ.get("SLM_DESK_DEBUG"):
            raise
        print(
            f"slm-desk: internal error: {exc.__class__.__name__}: {exc}\n"
            "  hint: run again with SLM_DESK_DEBUG=1 for the traceback, and please report it",
            file=sys.stderr,
        )
        return exit_codes.FAILED
