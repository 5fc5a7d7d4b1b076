"""The base of every screen: forwards worker state changes to the app's single handler.

Worker.StateChanged does not bubble; it reaches only the worker's node (the screen that started it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from slm_desk.desk import Desk
    from slm_desk.tui.app import SlmDeskApp


class DeskScreen(Screen[None]):
    def notify(self, message: str, **options: Any) -> None:  # type: ignore[override]
        """Notifications carry user text, paths and errors: plain text unless a caller asks for markup."""
        options.setdefault("markup", False)
        self.app.notify(message, **options)

    @property
    def desk(self) -> Desk:
        """The app's headless desk (config, store, models), typed."""
        return cast("SlmDeskApp", self.app).desk

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        cast("SlmDeskApp", self.app).worker_state(event)
