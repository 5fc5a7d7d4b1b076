"""The base of every screen: forwards worker state changes to the app's single handler.

Worker.StateChanged does not bubble; it reaches only the worker's node (the screen that started it).
"""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class DeskScreen(Screen[None]):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state(event)  # type: ignore[attr-defined]
