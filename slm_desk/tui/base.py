"""The base of every screen: forwards worker state changes to the app's single handler.

Worker.StateChanged does not bubble; it reaches only the worker's node (the screen that started it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from slm_desk.desk import Desk
    from slm_desk.tui.app import SlmDeskApp


class DeskScreen(Screen[None]):
    def notify(  # type: ignore[override]
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry user text, paths and errors: plain text unless a caller asks for markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    @property
    def desk(self) -> Desk:
        """The app's headless desk (config, store, models), typed."""
        return cast("SlmDeskApp", self.app).desk

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        cast("SlmDeskApp", self.app).worker_state(event)
