"""The Textual face of slm-desk. Only this package imports Textual; the core stays headless."""

from __future__ import annotations


def run_app(task: str | None = None) -> int:
    from slm_desk.tui.app import SlmDeskApp

    SlmDeskApp(initial_task=task).run()
    return 0
