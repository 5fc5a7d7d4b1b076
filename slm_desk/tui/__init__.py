"""The Textual face of slm-desk. Only this package imports Textual; the core stays headless."""

from __future__ import annotations


def run_app(task: str | None = None) -> int:
    import asyncio
    import os
    import sys

    from slm_desk.tui.app import SlmDeskApp

    app = SlmDeskApp(initial_task=task)
    # our own loop: asyncio.run() would wait, after the screen is gone, for a thread still inside llama.cpp
    loop = asyncio.new_event_loop()
    app.run(loop=loop)
    code = app.return_code or 0  # 1 after an uncaught exception (its traceback is in the crash log)
    if app.crash_log is not None:
        print(f"slm-desk: the app stopped on an internal error; its traceback is in {app.crash_log}", file=sys.stderr)
    working = app.desk.working()
    if working:  # ctrl+q during a model load: llama.cpp cannot be interrupted, and nothing is lost by not waiting
        print(f"slm-desk: quit while {working}; not waiting for it to finish", file=sys.stderr)
        app.desk.close()
        sys.stderr.flush()
        os._exit(code)
    loop.close()
    return code
