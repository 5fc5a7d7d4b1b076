"""The base of every screen: the header and navigation bar, the desk, and what a screen's workers say when they
fail or are cancelled.

Worker.StateChanged does not bubble; it reaches only the worker's node (the screen that started it), so each
screen puts itself back (`worker_stopped`), whichever screen is showing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerState

from slm_desk.errors import Cancelled, SlmDeskError

if TYPE_CHECKING:
    from slm_desk.desk import Desk


class HasDesk(Protocol):
    desk: Desk
    initial_task: str | None


UNREPORTED_S = 0.3  # after Esc, when a worker that never began is looked for (its task ends at once)

# what Esc (or quitting) stopped, said by the worker's name
CANCELLED = {
    "run": "generation cancelled",
    "calibrate": "calibration cancelled: nothing was saved",
    "pull": "pull cancelled: a later pull resumes it",
    "escalate": "escalation cancelled",
    "train": "",  # the worker says what Esc stopped: the fitting (the head unchanged) or the comparison (it is kept)
    "retrain": "retraining cancelled: the head is unchanged",
    "distill": "teacher stopped: what it labelled so far waits in Review",
    "order": "",  # Review's teaching order, asked again (the newer one replaces it): nothing to say
}


# mode, title, key, what it is for (the navigation bar, the app's bindings and its command palette)
SCREENS = [
    ("run", "Run", "f1", "Run a task on some input"),
    ("history", "History", "f2", "Past runs: search, open, re-run"),
    ("review", "Review", "f3", "The human review queue"),
    ("models", "Models", "f4", "Catalog and installed models: pull, remove, defaults"),
    ("teach", "Teach", "f5", "The example pool and the trained head: import, train, export"),
    ("calibration", "Calib", "f6", "Reliability diagram, ECE and thresholds per task"),
    ("settings", "Settings", "f7", "Escalation, runtime, logging"),
]
SHORT = {"history": "Hist", "review": "Rev", "settings": "Set"}  # the navigation bar's titles below 68 columns


class NavBar(Static):
    """Every screen with its F-key, the current one highlighted. The footer keeps the screen's own keys, so it
    fits 80 columns and its order never changes with focus. Narrower than the whole bar (68 columns), the longer
    titles shorten, so every F-key stays on screen down to 57 columns."""

    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self.current = current

    def on_mount(self) -> None:
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        full = sum(len(f" {key} {title}") for _, title, key, _ in SCREENS)
        narrow = 0 < self.size.width < full
        line = Text(no_wrap=True, overflow="ellipsis")
        for mode, title, key, _ in SCREENS:
            line.append(" ")
            name = SHORT.get(mode, title) if narrow else title
            line.append(f"{key.upper()} {name}", style="bold reverse" if mode == self.current else "")
        self.update(line)


class DeskScreen(Screen[None]):
    MODE: ClassVar[str] = ""

    def top(self) -> Iterator[Widget]:
        """The header and the navigation bar, first in every screen's compose."""
        yield Header()
        yield NavBar(self.MODE)

    def on_resize(self) -> None:
        """Below 72 columns the footer keeps the screen's keys and drops its ctrl+p hint (the palette still opens):
        otherwise the keys run past the edge and the last one is cut to a stray letter."""
        for footer in self.query(Footer):
            footer.show_command_palette = self.size.width >= 72

    def notify(self, message: str, **options: Any) -> None:
        """Notifications carry user text, paths and errors: plain text unless a caller asks for markup."""
        options.setdefault("markup", False)
        self.app.notify(message, **options)

    @property
    def desk(self) -> Desk:
        """The app's headless desk (config, store, models), typed."""
        return cast(HasDesk, self.app).desk

    def first_task(self, names: list[str], default: str) -> str:
        """The task a screen opens on: the one the app was started with (`slm-desk ui --task`), else `default`."""
        wanted = cast(HasDesk, self.app).initial_task
        if wanted in names:
            return str(wanted)
        return default if default in names else names[0]

    def cancel_work(self, group: str) -> None:
        """Esc: cancel this screen's workers of `group`. One cancelled in the same moment it was started (two keys
        at machine speed) never reports a state: Textual cancels its task before the task's first step, so the
        thread never runs and no StateChanged comes. Such a worker, gone from the app while still "running", is put
        back here as a cancelled one would be (before this, Teach kept "training" with nothing running)."""
        cancelled = self.workers.cancel_group(self, group)
        if cancelled:
            self.set_timer(UNREPORTED_S, lambda: self._unreported(cancelled))

    def _unreported(self, workers: list[Worker[Any]]) -> None:
        for worker in workers:
            if worker.state == WorkerState.RUNNING and worker not in self.app.workers:
                self.notify(f"{worker.name} cancelled before it began: nothing changed")
                self.worker_stopped(worker, "cancelled")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of this screen failed or was cancelled: say why, in the app's words, and put the screen back."""
        if event.state not in (WorkerState.ERROR, WorkerState.CANCELLED):
            return
        worker, error = event.worker, event.worker.error
        if event.state == WorkerState.CANCELLED or isinstance(error, Cancelled):
            reason = "cancelled"
            if said := CANCELLED.get(worker.name, "cancelled"):
                self.notify(said)
        elif isinstance(error, SlmDeskError):
            reason = error.message
            self.notify(error.hint or error.message, title=error.message, severity="error", timeout=10)
        else:
            reason = f"failed: {error!r}"
            self.notify(repr(error), title=f"{worker.name} failed", severity="error", timeout=10)
        self.worker_stopped(worker, reason)

    def worker_stopped(self, worker: Worker[Any], reason: str) -> None:
        """Put the screen back after one of its workers failed or was cancelled (screens with workers say how)."""
