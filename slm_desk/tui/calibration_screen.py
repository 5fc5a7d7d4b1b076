"""Calibration: per task, the reliability diagram of the latest profile, ECE and the threshold per label."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, ProgressBar, Select, Static
from textual.worker import Worker, get_current_worker

from slm_desk.contract.tasks import Task, load_task, task_names
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.widgets import ReliabilityPlot

MIN_LABELLED = 20  # as `slm-desk calibrate`
TALL = 34  # terminal rows from which the reliability diagram gets its full height
LIMIT = 200  # items the app calibrates on (minutes, not an hour); `slm-desk calibrate TASK` takes them all


class CalibrationScreen(DeskScreen):
    SUB_TITLE = "Calibration"
    MODE = "calibration"
    plotted_rows = 0  # the reliability diagram's height as last drawn (0: not yet)
    BINDINGS = [
        Binding("k", "calibrate", "Calibrate now"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+l", "reload", "Reload"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.top()
        names = list(task_names())
        first = self.first_task(names, "route-ticket")
        yield Select([(name, name) for name in names], value=first, allow_blank=False, id="task")
        yield ProgressBar(id="calibrate-progress", show_eta=True)
        with VerticalScroll():
            yield Static("", id="teaching")
            yield Static("", id="summary")
            yield ReliabilityPlot(id="plot")
            yield DataTable(id="thresholds", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.query_one("#thresholds", DataTable).add_columns("label", "risk", "target", "n", "threshold", "note")
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def on_resize(self) -> None:  # the diagram's height follows the terminal's: redrawn only when it changes
        if self._rows() != self.plotted_rows:
            self.action_reload()

    def _rows(self) -> int:
        return ReliabilityPlot.HEIGHT if self.app.size.height >= TALL else ReliabilityPlot.SHORT

    @on(Select.Changed, "#task")
    def action_reload(self) -> None:
        desk = self.desk
        task = load_task(str(self.query_one("#task", Select).value))
        model = self.desk.model_id(task)
        profile = desk.profile(task, model)
        table = self.query_one("#thresholds", DataTable)
        table.clear()
        plot = self.query_one("#plot", ReliabilityPlot)
        self.query_one("#teaching", Static).update(Text(self._teaching(task)))
        if profile is None:
            taught = self.desk.store.head_trained_at(task.name, task.version) is not None
            until = (
                f"the model's answers go to review until then: {task.name} has a trained head, and a taught task"
                " accepts only from measured tiers (`slm-desk train` measures the model too)"
                if taught
                else "answers are accepted on validity alone until then"
            )
            self.query_one("#summary", Static).update(
                Text(f"{task.name} v{task.version} is not calibrated on {model}.\nPress k to calibrate it ({until}).")
            )
            plot.update("")
            return
        h = profile.heldout
        self.query_one("#summary", Static).update(
            f"{task.name} v{task.version} on {model}: {profile.n_examples} examples, {profile.n_valid} valid, "
            f"{profile.accuracy:.1%} of valid answers fully right\n"
            f"ECE {profile.ece_raw:.3f} raw; held-out {h['ece_raw']:.3f} -> {h['ece_calibrated']:.3f} recalibrated"
            f"   Brier {profile.brier_raw:.3f}" + (f"\n{profile.source}; k measures it here" if profile.source else "")
        )
        rows = self.plotted_rows = self._rows()
        plot.plot([b.model_dump() for b in profile.reliability_raw], "reliability diagram (raw confidence)", rows)
        for group, t in profile.thresholds.items():
            table.add_row(
                group, t.risk, f"{t.target:.0%}", str(t.n), "-" if t.threshold is None else f"{t.threshold:.3f}", t.note
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return bool(self.query_one("#calibrate-progress", ProgressBar).display)
        return True

    def action_cancel(self) -> None:
        self.cancel_work("inference")
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.refresh_bindings()

    def _teaching(self, task: Task) -> str:
        """What the task learned from: its example pool and its trained head."""
        pool = self.desk.store.pool_signature(task.name, task.version)[0]
        if not pool:
            return f"Example pool: empty (slm-desk examples add {task.name} FILE.jsonl teaches this task)"
        line = f"Example pool: {pool} items, the {task.retrieval.k} most similar become each prompt's examples"
        if not task.head_fields:
            return line
        report = self.desk.head_report(task)
        if report is None:
            return line + f"\nHead: not trained (slm-desk train {task.name})"
        return line + (
            f"\nHead: trained {report.trained_at} on {report.n_train} items; held-out accuracy "
            f"{report.heldout_accuracy:.1%}, answers {report.heldout_accept_rate:.0%} without the LLM"
        )

    def action_calibrate(self) -> None:
        if self.query_one("#calibrate-progress", ProgressBar).display:
            self.notify("calibration is already running: Esc cancels it", severity="warning")
            return
        task = load_task(str(self.query_one("#task", Select).value))
        items, _, source = self.desk.calibration_items(task, limit=LIMIT)
        labelled = len(items)
        if labelled < MIN_LABELLED:
            self.notify(
                f"{task} has {labelled} labelled answers; calibration needs {MIN_LABELLED}. Label its answers in "
                f"Review (F3: a accepts, c corrects) and press k again, or from a shell: "
                f"slm-desk calibrate {task.name} --data FILE.jsonl",
                severity="warning",
                timeout=10,
            )
            return
        bar = self.query_one("#calibrate-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.refresh_bindings()
        self.notify(
            f"calibrating {task.name} on {labelled} labelled items ({source}"
            f"{'; the first ' + str(LIMIT) if labelled == LIMIT else ''}); Esc cancels"
        )
        self.calibrate_task(task, items)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inference", name="calibrate")
    def calibrate_task(self, task: Task, items: list[dict]) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._progress, done, total)

        self.desk.calibrate(task, items, progress=progress, cancelled=lambda: worker.is_cancelled)
        self.app.call_from_thread(self._calibrated)

    def worker_stopped(self, worker: Worker[Any], reason: str) -> None:
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.refresh_bindings()

    def _progress(self, done: int, total: int) -> None:
        self.query_one("#calibrate-progress", ProgressBar).update(total=total, progress=done)

    def _calibrated(self) -> None:
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.notify("calibration saved; `run` uses it from now on")
        self.action_reload()
