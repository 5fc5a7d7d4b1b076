"""SlmDeskApp: seven screens (run, history, review, models, teach, calibration, settings) over one headless Desk."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import Notify
from textual.screen import Screen
from textual.widget import AwaitMount

from slm_desk import locations
from slm_desk.desk import Desk
from slm_desk.tui import guards  # noqa: F401  # Textual widgets made safe for keys at machine speed
from slm_desk.tui.base import SCREENS
from slm_desk.tui.calibration_screen import CalibrationScreen
from slm_desk.tui.history_screen import HistoryScreen
from slm_desk.tui.messages import ConfigChanged, HeadRetrained, RerunRequested
from slm_desk.tui.modals import Dialog
from slm_desk.tui.models_screen import ModelsScreen
from slm_desk.tui.review_screen import ReviewScreen
from slm_desk.tui.run_screen import RunScreen
from slm_desk.tui.settings_screen import SettingsScreen
from slm_desk.tui.teach_screen import TeachScreen

MODE_SCREENS: list[tuple[str, type[Screen[None]]]] = [
    ("run", RunScreen),
    ("history", HistoryScreen),
    ("review", ReviewScreen),
    ("models", ModelsScreen),
    ("teach", TeachScreen),
    ("calibration", CalibrationScreen),
    ("settings", SettingsScreen),
]
PALETTE_SKIPS = {"cancel", "reload"}  # Esc and ctrl+l mean "this screen, now": not something to search for
TOASTS = 2  # notifications on screen at once (app.tcss docks them under the navigation bar)


class SlmDeskApp(App[None]):
    TITLE = "slm-desk"
    CSS_PATH = "app.tcss"
    # priority: the F-keys switch screens even from a text editor (TextArea would take F6/F7 otherwise); the
    # navigation bar shows them, so the footer has room for the screen's own keys
    BINDINGS = [
        Binding(key, f"switch_mode('{mode}')", title, priority=True, show=False) for mode, title, key, _ in SCREENS
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (72, "-normal")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall")]

    def __init__(self, initial_task: str | None = None, desk: Desk | None = None) -> None:
        super().__init__()
        self.desk = desk or Desk()
        self.initial_task = initial_task
        self.crash_log: Path | None = None  # where the traceback of an uncaught exception was written
        for mode, screen in MODE_SCREENS:
            self.add_mode(mode, screen)

    def notify(self, message: str, **options: Any) -> None:
        """Plain text by default: messages carry user input, paths and errors with square brackets."""
        options.setdefault("markup", False)
        super().notify(message, **options)

    def _on_notify(self, event: Notify) -> None:
        """At most TOASTS on screen, the oldest routine ones leaving first: fast labelling stacked a toast per key
        down over Review's key legend in a 20-row terminal. Errors and warnings stay until their time is up."""
        super()._on_notify(event)
        shown = list(self._notifications)
        surplus = len(shown) - TOASTS
        for old in [n for n in shown if n.severity == "information"][: max(0, surplus)]:
            self._unnotify(old, refresh=False)
        if surplus > 0:
            self._refresh_notifications()

    def on_mount(self) -> None:
        self.switch_mode("run")

    def _handle_exception(self, error: Exception) -> None:
        """An uncaught exception ends the app (Textual's rule) with return code 1; the traceback is also written to
        a file in the log folder, which `slm-desk` names on exit (the terminal's copy scrolls away)."""
        try:
            path = locations.log_dir() / f"crash-{datetime.now().strftime('%Y%m%d-%H%M%S')}.log"
            path.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
            self.crash_log = path
        except Exception:  # noqa: BLE001 - the crash itself must still be reported and end the app
            pass
        super()._handle_exception(error)

    def switch_mode(self, mode: str) -> AwaitMount:
        """Go to another screen; a dialog open on this one is cancelled first (it belongs to this screen: left open,
        it would come back later and take keys meant for the screen)."""
        if mode != self.current_mode:
            for _ in range(len(self.screen_stack) - 1):
                if not isinstance(self.screen, Dialog):
                    break
                self.screen.dismiss(None)
        return super().switch_mode(mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The screens, and what each screen can do ("train", "import", "pull" find the action, not only F5)."""
        yield from super().get_system_commands(screen)
        for mode, title, key, help_text in SCREENS:
            yield SystemCommand(f"Go to {title} ({key})", help_text, lambda m=mode: self.switch_mode(m))
        titles = {mode: title for mode, title, _, _ in SCREENS}
        for mode, cls in MODE_SCREENS:
            for binding in cls.BINDINGS:
                if not isinstance(binding, Binding) or binding.action in PALETTE_SKIPS or not binding.show:
                    continue
                key = binding.key_display or binding.key
                yield SystemCommand(
                    f"{titles[mode]}: {binding.description} ({key})",
                    f"on the {titles[mode]} screen",
                    lambda m=mode, a=binding.action: self.on_screen(m, a),
                )

    def on_screen(self, mode: str, action: str) -> None:
        """Go to a screen and do one of its actions there, as its key would."""
        self.switch_mode(mode)
        self.call_after_refresh(lambda: self.screen.run_action(action))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # no footer entry for the screen you are on
        return not (action == "switch_mode" and parameters and parameters[0] == self.current_mode)

    @on(RerunRequested)
    def rerun(self, message: RerunRequested) -> None:
        self.switch_mode("run")
        screen = self.screen
        if isinstance(screen, RunScreen):
            screen.start(message.task, message.text)

    @on(ConfigChanged)
    def config_changed(self) -> None:
        self.refresh_bindings()

    @on(HeadRetrained)
    def head_retrained(self, message: HeadRetrained) -> None:
        """The Teach screen, when it is the one showing, reloads now (on any other screen it reloads when shown)."""
        if isinstance(self.screen, TeachScreen) and not self.screen.training:
            self.screen.reload()
