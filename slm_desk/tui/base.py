"""The base of every screen: the header and navigation bar, and worker state changes sent to the app's handler.

Worker.StateChanged does not bubble; it reaches only the worker's node (the screen that started it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static
from textual.worker import Worker

if TYPE_CHECKING:
    from slm_desk.desk import Desk
    from slm_desk.tui.app import SlmDeskApp


# mode, title, key, what it is for (the navigation bar, the app's bindings and its command palette)
SCREENS = [
    ("run", "Run", "f1", "Run a task on some input"),
    ("history", "History", "f2", "Past runs: search, open, re-run"),
    ("review", "Review", "f3", "The human review queue"),
    ("models", "Models", "f4", "Catalog and installed models: pull, remove, defaults"),
    ("calibration", "Calib", "f6", "Reliability diagram, ECE and thresholds per task"),
    ("settings", "Settings", "f7", "Escalation, runtime, logging"),
]


class NavBar(Static):
    """Every screen with its F-key, the current one highlighted. The footer keeps the screen's own keys, so it
    fits 80 columns and its order never changes with focus."""

    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self.current = current

    def on_mount(self) -> None:
        line = Text(no_wrap=True, overflow="ellipsis")
        for mode, title, key, _ in SCREENS:  # 59 columns in all: whole at 60
            line.append(" ")
            line.append(f"{key.upper()} {title}", style="bold reverse" if mode == self.current else "")
        self.update(line)


class DeskScreen(Screen[None]):
    MODE: ClassVar[str] = ""

    def top(self) -> Iterator[Widget]:
        """The header and the navigation bar, first in every screen's compose."""
        yield Header()
        yield NavBar(self.MODE)

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
