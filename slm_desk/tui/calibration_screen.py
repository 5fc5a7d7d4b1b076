"""Calibration: per task, the reliability diagram of the latest profile, ECE and the threshold per label."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, ProgressBar, Select, Static
from textual.worker import get_current_worker

from slm_desk import calibration
from slm_desk.catalog import resolve_model
from slm_desk.tasks import Task, load_task, task_names
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.widgets import ReliabilityPlot


class CalibrationScreen(DeskScreen):
    SUB_TITLE = "Calibration"
    BINDINGS = [
        Binding("k", "calibrate", "Calibrate now"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+l", "reload", "Reload"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Select([(name, name) for name in task_names()], value="route-ticket", allow_blank=False, id="task")
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

    @on(Select.Changed, "#task")
    def action_reload(self) -> None:
        desk = self.desk
        task = load_task(str(self.query_one("#task", Select).value))
        model = resolve_model(desk.config.models.small).id
        profile = calibration.load(desk.store, task.name, task.version, model)
        table = self.query_one("#thresholds", DataTable)
        table.clear()
        plot = self.query_one("#plot", ReliabilityPlot)
        self.query_one("#teaching", Static).update(Text(self._teaching(task)))
        if profile is None:
            self.query_one("#summary", Static).update(
                Text(
                    f"{task.name} v{task.version} is not calibrated on {model}.\n"
                    "Press k to calibrate it (answers are accepted on validity alone until then)."
                )
            )
            plot.update("")
            return
        h = profile.heldout
        self.query_one("#summary", Static).update(
            f"{task.name} v{task.version} on {model}: {profile.n_examples} examples, {profile.accuracy:.1%} right\n"
            f"ECE {profile.ece_raw:.3f} raw; held-out {h['ece_raw']:.3f} -> {h['ece_calibrated']:.3f} recalibrated"
            f"   Brier {profile.brier_raw:.3f}"
        )
        plot.plot([b.model_dump() for b in profile.reliability_raw], "reliability diagram (raw confidence)")
        for group, t in profile.thresholds.items():
            table.add_row(
                group, t.risk, f"{t.target:.0%}", str(t.n), "-" if t.threshold is None else f"{t.threshold:.3f}", t.note
            )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return bool(self.query_one("#calibrate-progress", ProgressBar).display)
        return True

    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "inference")
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.refresh_bindings()

    def _teaching(self, task: Task) -> str:
        """What the task learned from: its example pool and its label head."""
        from slm_desk.head import load

        pool = self.desk.store.pool_signature(task.name, task.version)[0]
        if not pool:
            return f"Example pool: empty (slm-desk examples add {task.name} FILE.jsonl teaches this task)"
        line = f"Example pool: {pool} items, the {task.retrieval.k} most similar become each prompt's examples"
        if not task.is_label_task:
            return line
        loaded = load(self.desk.store, task)
        if loaded is None:
            return line + f"\nLabel head: not trained (slm-desk train {task.name})"
        report = loaded[2]
        return line + (
            f"\nLabel head: trained {report.trained_at} on {report.n_train} items; held-out accuracy "
            f"{report.heldout_accuracy:.1%}, answers {report.heldout_accept_rate:.0%} without the LLM"
        )

    def action_calibrate(self) -> None:
        if self.query_one("#calibrate-progress", ProgressBar).display:
            self.notify("calibration is already running: Esc cancels it", severity="warning")
            return
        from slm_desk.evalset import builtin

        task = str(self.query_one("#task", Select).value)
        if builtin(task) is None:
            self.notify(
                f"{task} has no built-in eval set; calibrate it from a shell with your labelled data:"
                f" slm-desk calibrate {task} --data FILE.jsonl",
                markup=False,
                severity="warning",
                timeout=8,
            )
            return
        bar = self.query_one("#calibrate-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self.refresh_bindings()
        self.calibrate_task(task)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inference", name="calibrate")
    def calibrate_task(self, task_name: str) -> None:
        from slm_desk.evalset import builtin, read_jsonl

        desk = self.desk
        task = load_task(task_name)
        path = builtin(task_name)
        assert path is not None
        items = read_jsonl(path)
        bar = self.query_one("#calibrate-progress", ProgressBar)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(bar.update, total=total, progress=done)

        worker = get_current_worker()
        pipeline = desk.pipeline(task, desk.backend(tuned_for=task), calibrated=False)
        profile = calibration.calibrate(pipeline, items, progress, cancelled=lambda: worker.is_cancelled)
        calibration.save(desk.store, profile)
        self.app.call_from_thread(self._calibrated)

    def _calibrated(self) -> None:
        self.query_one("#calibrate-progress", ProgressBar).display = False
        self.notify("calibration saved; `run` uses it from now on")
        self.action_reload()
